"""A throwaway redis-server on 127.0.0.1 for the coordinated-run tests (a real server).

Each server runs in a temp dir of its own on a free port, without persistence, so a stopped
and restarted server starts empty (as a CI service container would after a crash). Tests skip
with a reason when Debian's redis-server is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = "/usr/bin/redis-server"

needs_redis = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER),
    reason="needs /usr/bin/redis-server (CI installs Debian's redis-server)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` keep its port."""

    def __init__(self, directory: Path, password: str = "", tls: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = password
        # With TLS the server listens only on a TLS port, with a certificate for 127.0.0.1
        # signed by a throwaway CA (``ca.pem`` in its directory), as a managed Redis would.
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _tls_options(self) -> list[str]:
        if not self.ca_file.exists():
            make_certificates(self.directory)
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(self.directory / "server.pem"),
            "--tls-key-file", str(self.directory / "server.key"),
            "--tls-ca-cert-file", str(self.ca_file),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self) -> None:
        argv = [
            REDIS_SERVER,
            *(self._tls_options() if self.tls else ["--port", str(self.port)]),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, password=self.password or None, decode_responses=True)


def make_certificates(directory: Path) -> None:
    """A CA (``ca.pem``) and a server certificate for IP 127.0.0.1 signed by it, with
    Debian's ``openssl``."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=pytest-runset test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "san.cnf")  # fmt: skip


@pytest.fixture
def tls_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that speaks only TLS (``rediss://``)."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("needs /usr/bin/redis-server (CI installs Debian's redis-server)")
    directory = tmp_path / "redis-tls"
    directory.mkdir()
    server = RedisServer(directory, tls=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("needs /usr/bin/redis-server (CI installs Debian's redis-server)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()

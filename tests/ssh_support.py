"""A throwaway sshd on 127.0.0.1 for the scale-out tests (real ssh, real gateways).

The daemon runs as root with a config of its own in a temp dir: its own host key, one
authorized key, a free port, and a pid file. Two host aliases (``runset-a``, ``runset-b``) in a
generated ssh_config reach it, so worker ids show two "hosts". The remote interpreter is a
wrapper script that sets the same PYTHONPATH (this checkout) and runs this Python.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parent.parent
HOSTS = ("runset-a", "runset-b")

needs_sshd = pytest.mark.skipif(
    not os.path.exists(SSHD) or shutil.which("ssh") is None or os.geteuid() != 0,
    reason="needs /usr/sbin/sshd, an ssh client and root (CI installs openssh-server)",
)


@dataclass(frozen=True)
class Sshd:
    port: int
    config: Path  # the client's ssh_config
    python: Path  # the wrapper interpreter for python=

    def spec(self, host: str, *extra: str) -> str:
        parts = [f"ssh={host}", f"ssh_config={self.config}", f"python={self.python}", *extra]
        return "//".join(parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"sshd exited with {proc.returncode}: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} in {timeout}s")


@contextlib.contextmanager
def running_sshd(base: Path) -> Iterator[Sshd]:
    """Start the daemon with everything under ``base``; stop it when the block ends."""
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)],
            check=True,
        )
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    port = free_port()
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"HostKey {base / 'host_key'}",
                f"PidFile {base / 'sshd.pid'}",
                f"AuthorizedKeysFile {base / 'authorized_keys'}",
                "PermitRootLogin yes",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    # sshd insists on its privilege separation directory.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config), "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = base / "ssh_config"
    client.write_text(
        "".join(
            f"Host {host}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {port}\n"
            "  User root\n"
            f"  IdentityFile {base / 'client_key'}\n"
            "  IdentitiesOnly yes\n"
            "  BatchMode yes\n"
            "  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n"
            for host in HOSTS
        )
    )
    python = base / "python"
    python.write_text(f'#!/bin/sh\nexport PYTHONPATH={REPO}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    try:
        _wait_port(port, proc)
        yield Sshd(port=port, config=client, python=python)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

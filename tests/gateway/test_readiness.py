"""Starting, probing and stopping helper processes: real servers, real signals, no mocks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import process_alive, processes_with_cookie_prefix, wait_for
from pytest_runset.gateway.proctree import sweep_cookie
from pytest_runset.gateway.readiness import log_tail, start_process, stop_process, wait_ready

# Listens on 127.0.0.1:<argv[1]> after <argv[2]> seconds and accepts forever.
TCP_SERVER = r"""
import socket, sys, time
time.sleep(float(sys.argv[2]))
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
"""

# /redirect answers 302 to an unreachable place, /flaky 503 three times then 200, /broken 500.
HTTP_SERVER = r"""
import http.server, sys
hits = {"flaky": 0}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/nowhere")
        elif self.path == "/flaky":
            hits["flaky"] += 1
            self.send_response(200 if hits["flaky"] > 3 else 503)
        else:
            self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def cookie() -> Iterator[str]:
    value = f"rs-test-readiness-{uuid.uuid4().hex}"
    yield value
    sweep_cookie(value)  # cleanup only, whatever the test did


@pytest.fixture
def start(cookie: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """start_process with the test's cookie, a complete environment and a log in tmp_path."""
    started: list[subprocess.Popen[bytes]] = []

    def run(
        command: list[str] | str, *, shell: bool = False, log: str = "logs/helper.log"
    ) -> subprocess.Popen[bytes]:
        env = {**os.environ, "RUNSET_FLOW_ID": cookie}
        proc = start_process(
            command, shell=shell, cwd=str(tmp_path), env=env, log_path=str(tmp_path / log)
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_http_ready_against_a_real_http_server(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path, cookie: str
) -> None:
    (tmp_path / "index.html").write_text("hello", encoding="utf-8")
    port = free_port()
    proc = start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"])
    log = str(tmp_path / "logs" / "helper.log")
    problem = wait_ready(
        proc, ready=f"http://127.0.0.1:{port}/", ready_log=None, log_path=log, timeout_s=30
    )
    assert problem is None
    # http.server logs the probe's request on stderr, which shares the log with stdout.
    assert wait_for(lambda: '"GET / HTTP/1.1" 200' in log_tail(log), 30)
    assert stop_process(proc, grace_s=5, cookie=cookie) == 0
    assert proc.returncode == -signal.SIGTERM
    assert processes_with_cookie_prefix(cookie) == []


def test_http_status_decides_readiness(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    proc = start([sys.executable, "-c", HTTP_SERVER, str(port)])
    log = str(tmp_path / "logs" / "helper.log")
    base = f"http://127.0.0.1:{port}"
    # 503 means "not yet"; the fourth request gets its 200.
    assert (
        wait_ready(proc, ready=f"{base}/flaky", ready_log=None, log_path=log, timeout_s=30) is None
    )
    # A redirect is an answer: ready, even though its target is unreachable.
    assert (
        wait_ready(proc, ready=f"{base}/redirect", ready_log=None, log_path=log, timeout_s=30)
        is None
    )
    problem = wait_ready(proc, ready=f"{base}/broken", ready_log=None, log_path=log, timeout_s=1)
    assert problem == f"not ready after 1s ({base}/broken: HTTP 500)"


def test_tcp_ready_waits_for_the_listener(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    proc = start([sys.executable, "-c", TCP_SERVER, str(port), "0.3"])
    log = str(tmp_path / "logs" / "helper.log")
    problem = wait_ready(
        proc, ready=f"tcp://127.0.0.1:{port}", ready_log=None, log_path=log, timeout_s=30
    )
    assert problem is None
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass


def test_ready_log_regex_tolerates_bad_bytes_and_ignores_older_runs(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "helper.log"
    log_file.parent.mkdir()
    # A previous start's ready line, already in the (appended) log, must not count.
    log_file.write_bytes(b"server listening on port 1\n")
    script = (
        "import sys, time\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe garbage \\xc3\\n'); sys.stdout.flush()\n"
        "time.sleep(0.3)\n"
        "print('server listening on port 4242', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = start([sys.executable, "-c", script])
    problem = wait_ready(
        proc,
        ready=None,
        ready_log=r"^server listening on port 4\d+$",
        log_path=str(log_file),
        timeout_s=30,
    )
    assert problem is None
    assert log_file.read_bytes().startswith(b"server listening on port 1\n")
    assert "\ufffd" in log_tail(str(log_file))


def test_ready_log_never_seen_times_out_naming_the_pattern(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "helper.log"
    log_file.parent.mkdir()
    log_file.write_text("READY\n", encoding="utf-8")
    proc = start(["sh", "-c", "echo starting; sleep 600"])
    problem = wait_ready(proc, ready=None, ready_log="READY", log_path=str(log_file), timeout_s=1)
    assert problem == "not ready after 1s (no line matching 'READY' in the log)"
    assert proc.poll() is None, "a slow helper is reported, not killed, by wait_ready"


def test_both_probes_must_hold(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = str(tmp_path / "logs" / "helper.log")
    port = free_port()
    # The log line comes at once, the port never listens.
    proc = start(["sh", "-c", "echo up; sleep 600"])
    problem = wait_ready(
        proc, ready=f"tcp://127.0.0.1:{port}", ready_log="up", log_path=log, timeout_s=1
    )
    assert problem is not None
    assert problem.startswith(f"not ready after 1s (tcp://127.0.0.1:{port}: ")
    assert "refused" in problem

    # Both hold: the listener prints "listening" once bound.
    other = free_port()
    proc = start([sys.executable, "-c", TCP_SERVER, str(other), "0.2"], log="logs/both.log")
    problem = wait_ready(
        proc,
        ready=f"tcp://127.0.0.1:{other}",
        ready_log="^listening$",
        log_path=str(tmp_path / "logs" / "both.log"),
        timeout_s=30,
    )
    assert problem is None


def test_no_probe_means_alive_after_the_settle(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = str(tmp_path / "logs" / "helper.log")
    proc = start(["sleep", "600"])
    assert wait_ready(proc, ready=None, ready_log=None, log_path=log, timeout_s=30) is None
    assert proc.poll() is None

    quitter = start(["sh", "-c", "exit 4"], log="logs/quitter.log")
    problem = wait_ready(quitter, ready=None, ready_log=None, log_path=log, timeout_s=30)
    assert problem == "exited with code 4 before it was ready"


def test_exit_before_ready_gives_the_code_and_leaves_a_log(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = str(tmp_path / "logs" / "helper.log")
    port = free_port()
    proc = start("echo to-stdout; echo boom >&2; exit 3", shell=True)
    problem = wait_ready(
        proc, ready=f"http://127.0.0.1:{port}/", ready_log=None, log_path=log, timeout_s=30
    )
    assert problem == "exited with code 3 before it was ready"
    assert log_tail(log).splitlines() == ["to-stdout", "boom"]


def test_killed_before_ready_names_the_signal(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    proc = start("kill -9 $$", shell=True)
    problem = wait_ready(
        proc,
        ready=None,
        ready_log="never",
        log_path=str(tmp_path / "logs" / "helper.log"),
        timeout_s=30,
    )
    assert problem == "killed by SIGKILL before it was ready"


def test_cancelled_wait_returns_cancelled(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    proc = start(["sleep", "600"])
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        problem = wait_ready(
            proc,
            ready=f"tcp://127.0.0.1:{free_port()}",
            ready_log=None,
            log_path=str(tmp_path / "logs" / "helper.log"),
            timeout_s=120,
            cancelled=stop.is_set,
        )
    finally:
        timer.cancel()
    assert problem == "cancelled"


def test_malformed_ready_address_is_reported_at_once(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    proc = start(["sleep", "600"])
    log = str(tmp_path / "logs" / "helper.log")
    problem = wait_ready(proc, ready="tcp://127.0.0.1", ready_log=None, log_path=log, timeout_s=60)
    assert problem == "ready address 'tcp://127.0.0.1' is not tcp://host:port"


def test_start_process_errors_are_one_line(tmp_path: Path) -> None:
    env = dict(os.environ)
    log = str(tmp_path / "x.log")
    with pytest.raises(OSError, match=r"^cannot start 'no-such-program-rs': "):
        start_process(["no-such-program-rs"], shell=False, cwd=str(tmp_path), env=env, log_path=log)
    with pytest.raises(OSError, match=r"working directory .*missing.* does not exist"):
        start_process(["true"], shell=False, cwd=str(tmp_path / "missing"), env=env, log_path=log)


def test_start_process_uses_exactly_the_given_environment_and_appends(
    start: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "deep" / "er" / "env.log"
    log.parent.mkdir(parents=True)
    log.write_text("earlier\n", encoding="utf-8")
    proc = start_process(
        ["sh", "-c", 'echo "only=$ONLY home=$HOME"; echo err >&2; read line || echo no-stdin'],
        shell=False,
        cwd=str(tmp_path),
        env={"PATH": os.environ["PATH"], "ONLY": "x"},
        log_path=str(log),
    )
    assert proc.wait(30) == 0
    assert log.read_text(encoding="utf-8") == "earlier\nonly=x home=\nerr\nno-stdin\n"


def test_start_process_runs_in_its_own_session(
    start: Callable[..., subprocess.Popen[bytes]],
) -> None:
    proc = start(["sleep", "600"])
    assert os.getsid(proc.pid) == proc.pid
    assert os.getpgid(proc.pid) == proc.pid


def test_stop_process_kills_a_term_ignoring_group(
    start: Callable[..., subprocess.Popen[bytes]], cookie: str
) -> None:
    proc = start("trap '' TERM; sleep 600 & sleep 600", shell=True)
    assert wait_for(lambda: len(processes_with_cookie_prefix(cookie)) == 3, 30)
    stop_process(proc, grace_s=0.3, cookie=cookie)
    # TERM was ignored, so it took the KILL (the sweep may still see dying members: its count
    # is not asserted).
    assert proc.returncode == -signal.SIGKILL
    assert wait_for(lambda: not processes_with_cookie_prefix(cookie), 30)


def test_stop_process_sweeps_a_daemon_that_left_the_group(
    start: Callable[..., subprocess.Popen[bytes]], cookie: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    script = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
        "        os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "time.sleep(600)\n"
    )
    proc = start([sys.executable, "-c", script, str(pidfile)])
    assert wait_for(pidfile.exists, 30)
    daemon = int(pidfile.read_text())
    assert os.getpgid(daemon) != proc.pid
    assert stop_process(proc, grace_s=5, cookie=cookie) == 1
    assert wait_for(lambda: not process_alive(daemon), 30)
    assert processes_with_cookie_prefix(cookie) == []


def test_stop_process_after_the_leader_was_reaped(
    start: Callable[..., subprocess.Popen[bytes]], cookie: str
) -> None:
    # The leader exits, its background child stays in the group: stop still ends the child.
    proc = start("sleep 600 & exit 0", shell=True)
    assert proc.wait(30) == 0
    assert wait_for(lambda: len(processes_with_cookie_prefix(cookie)) == 1, 30)
    assert stop_process(proc, grace_s=5, cookie=cookie) == 0
    assert wait_for(lambda: not processes_with_cookie_prefix(cookie), 30)
    # And stopping again is harmless.
    assert stop_process(proc, grace_s=5, cookie=cookie) == 0


def test_log_tail_returns_the_last_lines_with_replacement(tmp_path: Path) -> None:
    log = tmp_path / "tail.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(30)) + b"bad \xff byte\n")
    assert log_tail(str(log), 3).splitlines() == ["line 28", "line 29", "bad \ufffd byte"]
    assert len(log_tail(str(log)).splitlines()) == 20
    assert log_tail(str(tmp_path / "missing.log")) == ""

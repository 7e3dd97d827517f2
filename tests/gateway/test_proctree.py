"""Finding and killing a flow's processes: real trees, real daemons, real signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import process_alive, processes_with_cookie_prefix, wait_for
from pytest_runset.gateway import proctree
from pytest_runset.gateway.proctree import (
    group_alive,
    pids_with_cookie,
    signal_group,
    sweep_cookie,
    terminate_group,
)

# Forks a daemon (fork, setsid, fork) that records its pid and sleeps, then exits at once.
DAEMON_SCRIPT = r"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(600)
    os._exit(0)
"""

# A group leader that notes SIGTERM and carries on, with a child that ignores SIGTERM.
STUBBORN_SCRIPT = r"""
import os, signal, subprocess, sys, time
marker = sys.argv[1]
def noted(signum, frame):
    with open(marker, "w") as handle:
        handle.write("term")
signal.signal(signal.SIGTERM, noted)
child = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 600"])
with open(marker + ".ready", "w") as handle:
    handle.write(str(child.pid))
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def cookie() -> Iterator[str]:
    value = f"rs-test-proctree-{uuid.uuid4().hex}"
    yield value
    sweep_cookie(value)  # cleanup only


@pytest.fixture
def popen() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        args: list[str], cookie: str, *, start_new_session: bool = False
    ) -> subprocess.Popen[bytes]:
        env = {**os.environ, "RUNSET_FLOW_ID": cookie}
        proc = subprocess.Popen(args, env=env, start_new_session=start_new_session)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_pids_with_cookie_finds_a_child_and_its_grandchild(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    child = popen(["sh", "-c", f'sleep 600 & echo $! > "{pidfile}"; wait'], cookie)
    other = popen(["sleep", "600"], cookie + "-other")
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 30)
    grandchild = int(pidfile.read_text())
    assert wait_for(lambda: {child.pid, grandchild} <= set(pids_with_cookie(cookie)), 30)
    found = pids_with_cookie(cookie)
    assert set(found) == {child.pid, grandchild}
    assert os.getpid() not in found
    assert other.pid not in found  # a cookie is matched exactly, never as a prefix
    assert pids_with_cookie(cookie + "-other") == [other.pid]
    assert pids_with_cookie(f"rs-test-none-{uuid.uuid4().hex}") == []


def test_the_caller_is_never_listed_nor_swept(cookie: str) -> None:
    code = (
        "import os, subprocess, sys\n"
        "from pytest_runset.gateway.proctree import pids_with_cookie, sweep_cookie\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "import time\n"
        "deadline = time.monotonic() + 30\n"
        "while child.pid not in pids_with_cookie(sys.argv[1]) and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "found = pids_with_cookie(sys.argv[1])\n"
        "assert os.getpid() not in found, found\n"
        "assert found == [child.pid], (found, child.pid)\n"
        "print(sweep_cookie(sys.argv[1]))\n"
        "child.wait()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, cookie],
        env={**os.environ, "RUNSET_FLOW_ID": cookie},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_sweep_kills_a_double_forked_daemon(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    launcher = popen([sys.executable, "-c", DAEMON_SCRIPT, str(pidfile)], cookie)
    assert launcher.wait(60) == 0
    assert wait_for(pidfile.exists, 30)
    daemon = int(pidfile.read_text())
    assert process_alive(daemon)
    # It escaped the launcher's session and process group: only the cookie still finds it.
    assert os.getsid(daemon) != os.getsid(0)
    assert os.getsid(daemon) != launcher.pid
    assert processes_with_cookie_prefix(cookie) == [daemon]
    assert sweep_cookie(cookie) == 1
    assert wait_for(lambda: not process_alive(daemon), 30)
    assert processes_with_cookie_prefix(cookie) == []
    assert sweep_cookie(cookie) == 0


def test_sweep_counts_every_process_it_kills(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    popen([sys.executable, "-c", DAEMON_SCRIPT, str(pidfile)], cookie).wait(60)
    sleepers = [popen(["sleep", "600"], cookie) for _ in range(2)]
    bystander = popen(["sleep", "600"], f"rs-test-bystander-{uuid.uuid4().hex}")
    assert wait_for(pidfile.exists, 30)
    assert wait_for(lambda: len(processes_with_cookie_prefix(cookie)) == 3, 30)
    assert sweep_cookie(cookie) == 3
    for sleeper in sleepers:
        assert sleeper.wait(30) == -9
    assert wait_for(lambda: not processes_with_cookie_prefix(cookie), 30)
    assert bystander.poll() is None, "a process with another cookie was killed"


def test_terminate_group_terms_then_kills_a_stubborn_group(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    marker = tmp_path / "term"
    leader = popen(
        [sys.executable, "-c", STUBBORN_SCRIPT, str(marker)], cookie, start_new_session=True
    )
    ready = Path(str(marker) + ".ready")
    assert wait_for(ready.exists, 30)
    child = int(ready.read_text())
    assert os.getpgid(child) == leader.pid
    assert wait_for(lambda: len(processes_with_cookie_prefix(cookie)) >= 3, 30)  # py, sh|sleep

    terminate_group(leader.pid, 0.5, reap=leader.poll)
    assert marker.read_text() == "term", "SIGTERM first"
    assert leader.wait(30) == -9, "then SIGKILL"
    assert wait_for(lambda: not processes_with_cookie_prefix(cookie), 30)
    assert wait_for(lambda: not group_alive(leader.pid), 30)


def test_terminate_group_without_a_reap_callback(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]]
) -> None:
    group = popen(
        ["sh", "-c", "trap '' TERM; sleep 600 & sleep 600"], cookie, start_new_session=True
    )
    assert wait_for(lambda: len(processes_with_cookie_prefix(cookie)) == 3, 30)
    terminate_group(group.pid, 0.3)
    assert group.wait(30) == -9
    assert wait_for(lambda: not processes_with_cookie_prefix(cookie), 30)


def test_terminate_group_returns_early_when_the_group_obeys(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]]
) -> None:
    group = popen(["sh", "-c", "sleep 600 & sleep 600"], cookie, start_new_session=True)
    assert wait_for(lambda: len(processes_with_cookie_prefix(cookie)) == 3, 30)
    began = time.monotonic()
    terminate_group(group.pid, 120.0, reap=group.poll)
    # Far below the 120 s grace: the group emptied on SIGTERM.
    assert time.monotonic() - began < 60
    assert group.returncode == -15
    assert wait_for(lambda: not processes_with_cookie_prefix(cookie), 30)


def test_signalling_a_gone_group(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = popen(["true"], cookie, start_new_session=True)
    assert proc.wait(30) == 0
    assert signal_group(proc.pid, 0) is False
    assert signal_group(proc.pid, 15) is False
    assert group_alive(proc.pid) is False
    terminate_group(proc.pid, 5.0)  # a no-op, no exception


def test_signal_group_reaches_a_live_group(
    cookie: str, popen: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = popen(["sleep", "600"], cookie, start_new_session=True)
    assert group_alive(proc.pid)
    assert signal_group(proc.pid, 9) is True
    assert proc.wait(30) == -9


def test_last_pid_moves_when_a_process_is_created() -> None:
    before = proctree.last_pid()
    assert isinstance(before, int)
    child = subprocess.Popen(["true"])
    child.wait()
    after = proctree.last_pid()
    assert after is not None
    assert after != before


def test_one_quiet_scan_is_enough_when_no_process_was_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scans: list[str] = []
    monkeypatch.setattr(proctree, "pids_with_cookie", lambda cookie: scans.append(cookie) or [])
    monkeypatch.setattr(proctree, "last_pid", lambda: 4242)
    assert sweep_cookie("quiet") == 0
    assert scans == ["quiet"]


def test_a_process_created_during_a_scan_asks_for_a_second_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scans: list[str] = []
    pids = iter(range(1000, 2000))
    monkeypatch.setattr(proctree, "pids_with_cookie", lambda cookie: scans.append(cookie) or [])
    monkeypatch.setattr(proctree, "last_pid", lambda: next(pids))
    assert sweep_cookie("busy") == 0
    assert scans == ["busy", "busy"]
    # Without /proc/loadavg: two quiet scans, as before.
    scans.clear()
    monkeypatch.setattr(proctree, "last_pid", lambda: None)
    assert sweep_cookie("unknown") == 0
    assert scans == ["unknown", "unknown"]

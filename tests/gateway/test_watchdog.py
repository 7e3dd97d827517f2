"""The run's watchdog: a real detached process that outlives its controller by design."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import process_alive, wait_for
from pytest_runset.gateway import watchdog

# A controller: starts the watchdog for a run, a flow of that run (cookie) and exits or
# finishes normally, printing the pids.
CONTROLLER = r"""
import os, subprocess, sys
from pytest_runset.gateway import watchdog
run_id, how, cookies = sys.argv[1], sys.argv[2], sys.argv[3]
pid, fd = watchdog.spawn(cookies, [])
watchdog.note_cookie(cookies, f"{run_id}.flow.1.ab")
flow = subprocess.Popen(
    ["sleep", "600"], env={**os.environ, "RUNSET_FLOW_ID": f"{run_id}.flow.1.ab"},
    start_new_session=True,
)
# Another session's flow with the same run id: never the watchdog's business.
other = subprocess.Popen(
    ["sleep", "600"], env={**os.environ, "RUNSET_FLOW_ID": f"{run_id}.flow.1.cd"},
    start_new_session=True,
)
print(other.pid, file=sys.stderr, flush=True)
print(pid, flow.pid, flush=True)
if how == "done":
    flow.kill()
    flow.wait()
    watchdog.finish(fd)
    sys.exit(0)
os.kill(os.getpid(), 9)
"""


def _controller(how: str, tmp_path: Path) -> tuple[int, int, int]:
    run_id = f"rs-test-wd-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, run_id, how, str(tmp_path / "cookies")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    other = int(proc.stderr.readline())
    line = proc.stdout.readline()
    proc.wait(timeout=30)
    watch, flow = (int(value) for value in line.split())
    return watch, flow, other


def test_a_dead_controllers_flows_are_killed_by_its_watchdog(tmp_path: Path) -> None:
    watch, flow, other = _controller("die", tmp_path)
    try:
        assert wait_for(lambda: not process_alive(flow), 10)
        assert wait_for(lambda: not process_alive(watch), 10)
        # Only the cookies this run handed out: a namesake run's flow lives on.
        assert process_alive(other)
    finally:
        os.kill(other, 9)


def test_a_finished_run_releases_its_watchdog(tmp_path: Path) -> None:
    watch, flow, other = _controller("done", tmp_path)
    os.kill(other, 9)
    assert wait_for(lambda: not process_alive(watch), 10)
    assert not process_alive(flow)


def test_the_watchdog_ignores_the_terminals_signals() -> None:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_runset.gateway.watchdog", "-"],
        stdin=read_end,
        start_new_session=True,
    )
    os.close(read_end)
    try:
        assert wait_for(lambda: _signals_ignored(proc.pid), 10)
        for sig in (1, 2, 15):
            os.kill(proc.pid, sig)
        assert proc.poll() is None
    finally:
        watchdog.finish(write_end)
    assert proc.wait(timeout=10) == 0


def _signals_ignored(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("SigIgn:"):
                    mask = int(line.split()[1], 16)
                    return all(mask & (1 << (sig - 1)) for sig in (1, 2, 15))
    except OSError:
        return False
    return False

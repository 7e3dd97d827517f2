"""What a flow in an xdist worker waits for: exclusive-flow locks (real flocks, real processes)
and the run's global deadline."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import wait_for
from pytest_runset.engine.supervision import Busy, DeadlinePassed, GlobalDeadline, Ready
from pytest_runset.xdist.waits import Exclusion

# Holds a lock on a run's exclusive.lock (shared or exclusive) until stdin closes.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX if sys.argv[2] == "ex" else fcntl.LOCK_SH)
print("held", flush=True)
sys.stdin.read()
"""


def flow_state(run_dir: Path, *, exclusive: bool, any_exclusive: bool = True) -> Any:
    """The parts of a flow's state the exclusion reads: its flow and its run."""
    flow = SimpleNamespace(exclusive=exclusive)
    others = [SimpleNamespace(exclusive=any_exclusive), flow]
    run = SimpleNamespace(
        runset=SimpleNamespace(flows=others), directory=SimpleNamespace(path=run_dir)
    )
    return SimpleNamespace(flow=flow, run=run)


@pytest.fixture
def holder(tmp_path: Path) -> Any:
    started: list[subprocess.Popen[str]] = []

    def hold(name: str, mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path / name), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        started.append(proc)
        return proc

    yield hold
    for proc in started:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_run_set_without_exclusive_flows_takes_no_lock(tmp_path: Path) -> None:
    exclusion = Exclusion(flow_state(tmp_path, exclusive=False, any_exclusive=False))
    assert exclusion.enter(1.0, None) == Ready()
    assert list(tmp_path.iterdir()) == []


def test_ordinary_flows_share_and_an_exclusive_flow_waits_for_them(
    tmp_path: Path, holder: Any
) -> None:
    first = Exclusion(flow_state(tmp_path, exclusive=False))
    second = Exclusion(flow_state(tmp_path, exclusive=False))
    assert first.enter(1.0, None) == Ready()
    assert second.enter(1.0, None) == Ready()
    first.leave()
    second.leave()
    running = holder("exclusive.lock", "sh")  # an ordinary flow of another xdist worker
    alone = Exclusion(flow_state(tmp_path, exclusive=True))
    reason = alone.enter(0.3, None)
    assert isinstance(reason, Busy)
    assert reason.reason.startswith("other flows of the session still running for ")
    assert running.stdin is not None
    running.stdin.close()
    assert wait_for(lambda: running.poll() is not None, timeout=30)
    assert alone.enter(5.0, None) == Ready()
    alone.leave()


def test_an_exclusive_flow_that_waits_closes_the_gate_behind_it(
    tmp_path: Path, holder: Any
) -> None:
    holder("exclusive-gate.lock", "ex")  # an exclusive flow waiting in another xdist worker
    later = Exclusion(flow_state(tmp_path, exclusive=False))
    started = time.monotonic()
    reason = later.enter(0.3, None)
    assert isinstance(reason, Busy)
    assert reason.reason.startswith("an exclusive flow of the session running for ")
    assert time.monotonic() - started >= 0.3


def test_the_global_deadline_ends_the_wait_as_deadline_passed(tmp_path: Path, holder: Any) -> None:
    holder("exclusive.lock", "ex")
    waiting = Exclusion(flow_state(tmp_path, exclusive=False))
    passed = GlobalDeadline(at=time.time() - 1, timeout_s=5)
    assert waiting.enter(30.0, passed) == DeadlinePassed()

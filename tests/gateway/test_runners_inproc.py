"""In-process flows without a browser: the flow thread's deadline, grace, kill and retirement,
output and environment capture, and a worker that retires over a real execnet channel."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import execnet
import pytest

import pytest_runset.gateway.worker
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.runners.inproc import (
    FlowThread,
    flow_environment,
    flow_output,
    list_artifacts,
    run_inprocess,
)


def spec_for(tmp_path: Path, grace: float = 0.2) -> dict[str, Any]:
    return {"flow_dir": str(tmp_path), "kill_grace_s": grace}


def test_a_body_that_returns_in_time_keeps_its_result(tmp_path: Path) -> None:
    (tmp_path / "shot.png").write_bytes(b"x")
    (tmp_path / "stdout.log").write_text("")
    result = run_inprocess(
        spec_for(tmp_path),
        Control(5),
        lambda: {"status": "failed", "message": "nope", "where": "step 1/1"},
        lambda: 0,
        FlowThread(),
    )
    assert result["status"] == "failed"
    assert result["message"] == "nope"
    assert result["artifacts"] == ["shot.png"]
    assert "where" not in result


def test_a_body_cut_short_by_the_deadline_is_a_timeout(tmp_path: Path) -> None:
    control = Control(0.3)

    def body() -> dict[str, Any]:
        # Like a Playwright wait bounded by the flow's remaining time.
        time.sleep(control.remaining() + 0.05)
        return {"status": "failed", "message": "Timeout", "where": 'step 2/3 (click "#a")'}

    result = run_inprocess(spec_for(tmp_path, 2.0), control, body, lambda: 0, FlowThread())
    assert result["status"] == "timeout"
    assert result["message"] == 'timeout after 0.3s in step 2/3 (click "#a")'
    assert "retire" not in result


def test_a_stuck_body_is_killed_then_its_worker_retires(tmp_path: Path) -> None:
    release = threading.Event()
    killed: list[float] = []
    thread = FlowThread()
    started = time.monotonic()
    result = run_inprocess(
        spec_for(tmp_path, 0.2),
        Control(0.2),
        lambda: {"status": "passed"} if release.wait(30) else {},
        lambda: killed.append(time.monotonic()) or 3,
        thread,
    )
    elapsed = time.monotonic() - started
    release.set()
    assert result["status"] == "timeout"
    assert result["message"] == "timeout after 0.2s"
    assert result["retire"] is True
    assert killed
    assert killed[0] - started >= 0.4  # timeout, then the grace, then the kill
    assert elapsed < 0.2 + 0.2 + 1.0 + 1.0
    assert any("worker is replaced" in warning for warning in result["warnings"])
    assert any("killed 3 process(es)" in warning for warning in result["warnings"])
    # The thread is lost for good: nothing else runs on it.
    again = run_inprocess(spec_for(tmp_path), Control(5), dict, lambda: 0, thread)
    assert again["status"] == "error"
    assert again["retire"] is True


def test_a_body_unblocked_by_the_kill_does_not_retire(tmp_path: Path) -> None:
    unblock = threading.Event()
    result = run_inprocess(
        spec_for(tmp_path, 0.1),
        Control(0.1),
        lambda: {"status": "failed", "message": "Target closed"} if unblock.wait(30) else {},
        lambda: unblock.set() or 1,
        FlowThread(),
    )
    assert result["status"] == "timeout"
    assert "retire" not in result


def test_cancel_interrupts(tmp_path: Path) -> None:
    control = Control(30)
    threading.Timer(0.1, control.cancel, args=("interrupted",)).start()
    stop = threading.Event()
    result = run_inprocess(
        spec_for(tmp_path, 0.1),
        control,
        lambda: {"status": "passed"} if stop.wait(30) else {},
        lambda: stop.set() or 0,
        FlowThread(),
    )
    assert result["status"] == "interrupted"
    assert result["message"] == "interrupted"


def test_a_runner_bug_is_an_error(tmp_path: Path) -> None:
    def body() -> dict[str, Any]:
        raise KeyError("oops")

    result = run_inprocess(spec_for(tmp_path), Control(5), body, lambda: 0, FlowThread())
    assert result["status"] == "error"
    assert result["message"].startswith("runner failed: Traceback")
    assert "KeyError: 'oops'" in result["message"]


def test_output_of_python_and_children_goes_to_the_logs(tmp_path: Path) -> None:
    with flow_output(str(tmp_path)):
        print("to stdout")
        print("to stderr", file=sys.stderr)
        os.system("echo child out; echo child err >&2")
    print("back on the real stdout")
    assert (tmp_path / "stdout.log").read_text() == "to stdout\nchild out\n"
    assert (tmp_path / "stderr.log").read_text() == "to stderr\nchild err\n"


def test_environment_and_directory_are_restored(tmp_path: Path) -> None:
    before = dict(os.environ)
    cwd = os.getcwd()
    with flow_environment({"RUNSET_TEST_VAR": "1", "PATH": "/nowhere"}, str(tmp_path)):
        assert os.environ["RUNSET_TEST_VAR"] == "1"
        assert os.getcwd() == str(tmp_path)
    assert dict(os.environ) == before
    assert os.getcwd() == cwd


def test_artifacts_leave_out_logs_results_and_hidden_directories(tmp_path: Path) -> None:
    for name in ("stdout.log", "stderr.log", "result.json", "flow-report.json", "a.png"):
        (tmp_path / name).write_text("")
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "b.png").write_text("")
    (tmp_path / ".video").mkdir()
    (tmp_path / ".video" / "x.webm").write_text("")
    assert list_artifacts(str(tmp_path)) == ["a.png", "shots/b.png"]


# -- a worker over execnet ------------------------------------------------------------------------

STUCK = (
    "import time\n\ndef stuck(flow_dir):\n    time.sleep(600)\n\ndef fine(flow_dir):\n    pass\n"
)


@pytest.fixture
def channel() -> Iterator[Any]:
    gateway = execnet.makegateway("popen")
    channel = gateway.remote_exec(pytest_runset.gateway.worker)
    channel.send({"sys_path": []})
    kind, _ = channel.receive(60)
    assert kind == "ready"
    yield channel
    gateway.exit()


def callable_spec(tmp_path: Path, function: str, timeout: float) -> dict[str, Any]:
    (tmp_path / "stuckflows.py").write_text(STUCK)
    flow_dir = tmp_path / f"{function}-{uuid.uuid4().hex[:6]}"
    return {
        "flow_id": f"rs-test-inproc-{uuid.uuid4().hex}",
        "kind": "callable",
        "name": function,
        "slug": function,
        "attempt": 1,
        "cwd": str(tmp_path),
        "env": {"RUNSET_WORKER": "gw0"},
        "flow_dir": str(flow_dir),
        "run_dir": str(tmp_path),
        "report_path": str(flow_dir / "flow-report.json"),
        "timeout_s": timeout,
        "kill_grace_s": 0.2,
        "steps": [],
        "callable": f"stuckflows:{function}",
        "params": ["flow_dir"],
        "root": str(tmp_path),
        "base_url": "",
        "browser": None,
    }


def finished(channel: Any) -> dict[str, Any]:
    while True:
        kind, data = channel.receive(60)
        if kind == "finished":
            result: dict[str, Any] = data
            return result


def test_worker_retires_after_a_stuck_callable(tmp_path: Path, channel: Any) -> None:
    channel.send(("run", callable_spec(tmp_path, "fine", 30)))
    assert finished(channel)["status"] == "passed"
    channel.send(("run", callable_spec(tmp_path, "stuck", 0.3)))
    result = finished(channel)
    assert result["status"] == "timeout"
    assert result["retire"] is True
    # Until the controller replaces it, a retired worker runs nothing more.
    channel.send(("run", callable_spec(tmp_path, "fine", 30)))
    again = finished(channel)
    assert again["status"] == "error"
    assert "worker retired" in again["message"]

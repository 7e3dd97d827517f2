"""The gateway side, driven over a real execnet channel: the protocol, and that a worker kills its
flow when the controller goes away (channel closed, gateway exited, controller SIGKILLed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import execnet
import pytest

import pytest_runset.gateway.worker
from conftest import TREE_SCRIPT, flow_spec, process_alive, processes_with_cookie_prefix, wait_for
from pytest_runset.gateway.proctree import sweep_cookie

RECEIVE_TIMEOUT_S = 60.0

# A process tree: a child in the flow's group, a child in its own session and a double-forked
# daemon; records that everything is up, then hangs.

# A controller in its own process: starts a worker gateway, runs the tree flow, then waits to be
# SIGKILLed. Prints the worker's pid once the flow runs.
CONTROLLER_SCRIPT = r"""
import json, sys, time
import execnet
import pytest_runset.gateway.worker
spec = json.loads(sys.argv[1])
gateway = execnet.makegateway("popen")
channel = gateway.remote_exec(pytest_runset.gateway.worker)
channel.send({"sys_path": []})
kind, info = channel.receive(60)
assert kind == "ready", kind
channel.send(("run", spec))
kind, _ = channel.receive(60)
assert kind == "started", kind
print(info["pid"], flush=True)
time.sleep(600)
"""


@pytest.fixture
def make_spec(tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    cookies: list[str] = []

    def make(
        command: list[str], *, kind: str = "command", timeout: float = 600.0, grace: float = 30.0
    ) -> dict[str, Any]:
        cookie = f"rs-test-worker-{uuid.uuid4().hex}"
        cookies.append(cookie)
        return flow_spec(
            tmp_path,
            len(cookies),
            cookie,
            command,
            kind=kind,
            name="tree",
            attempt=2,
            timeout=timeout,
            grace=grace,
        )

    yield make
    for cookie in cookies:
        sweep_cookie(cookie)  # cleanup only


class Gateway:
    """A worker gateway started directly with execnet, as the pool would."""

    def __init__(self) -> None:
        self.group = execnet.Group()
        self.gateway = self.group.makegateway("popen")
        self.channel = self.gateway.remote_exec(pytest_runset.gateway.worker)
        self.channel.send({"sys_path": []})
        kind, self.info = self.channel.receive(RECEIVE_TIMEOUT_S)
        assert kind == "ready"
        self.pid: int = self.info["pid"]

    def receive(self, expected: str) -> dict[str, Any]:
        kind, data = self.channel.receive(RECEIVE_TIMEOUT_S)
        assert kind == expected, (kind, data)
        assert isinstance(data, dict)
        return data

    def close(self) -> None:
        self.group.terminate(timeout=10)
        if process_alive(self.pid):  # cleanup only
            os.kill(self.pid, signal.SIGKILL)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    started = Gateway()
    try:
        yield started
    finally:
        started.close()


def _start_tree(gateway: Gateway, spec: dict[str, Any]) -> int:
    gateway.channel.send(("run", spec))
    assert gateway.receive("started")["flow_id"] == spec["flow_id"]
    assert wait_for((Path(spec["flow_dir"]) / "started").exists, 30)
    # python, the grouped sleep, the session sleep and the daemon
    assert wait_for(lambda: len(processes_with_cookie_prefix(spec["flow_id"])) >= 4, 30)
    return int((Path(spec["flow_dir"]) / "daemon.pid").read_text())


def test_ready_describes_the_worker(gateway: Gateway) -> None:
    from pytest_runset import __version__

    assert gateway.pid != os.getpid()
    assert process_alive(gateway.pid)
    assert gateway.info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert gateway.info["version"] == __version__
    assert gateway.info["host"]
    assert os.getpgid(gateway.pid) == gateway.pid  # its own group


def test_protocol_run_finish_and_result_json(
    gateway: Gateway, make_spec: Callable[..., dict[str, Any]]
) -> None:
    gateway.channel.send(("cancel", {"reason": "nothing runs"}))  # ignored: no flow
    spec = make_spec(["sh", "-c", "echo hi; exit 77"])
    gateway.channel.send(("run", spec))
    started = gateway.receive("started")
    result = gateway.receive("finished")
    assert result["status"] == "skipped"
    assert result["attempt"] == 2
    assert result["started_at"] == started["started_at"]
    assert result["leftover_processes"] == 0
    assert result["metrics"] == {}
    assert result["artifacts"] == []
    assert result["warnings"] == []
    assert json.loads((Path(spec["flow_dir"]) / "result.json").read_text()) == result
    assert (Path(spec["flow_dir"]) / "stdout.log").read_text() == "hi\n"


def test_an_unknown_runner_is_an_error_result(
    gateway: Gateway, make_spec: Callable[..., dict[str, Any]]
) -> None:
    spec = make_spec(["true"], kind="no-such-kind")
    gateway.channel.send(("run", spec))
    gateway.receive("started")
    result = gateway.receive("finished")
    assert result["status"] == "error"
    assert "runner failed" in result["message"]
    assert (Path(spec["flow_dir"]) / "result.json").exists()
    # The worker is still serving.
    spec = make_spec(["true"])
    gateway.channel.send(("run", spec))
    gateway.receive("started")
    assert gateway.receive("finished")["status"] == "passed"


def test_stop_kills_the_running_flow_and_ends_the_worker(
    gateway: Gateway, make_spec: Callable[..., dict[str, Any]]
) -> None:
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT])
    daemon = _start_tree(gateway, spec)
    gateway.channel.send(("stop", {}))
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 30)
    assert wait_for(lambda: not process_alive(daemon), 10)
    gateway.channel.waitclose(RECEIVE_TIMEOUT_S)  # remote_exec returned


def test_closing_the_channel_kills_the_flow(
    gateway: Gateway, make_spec: Callable[..., dict[str, Any]]
) -> None:
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT])
    daemon = _start_tree(gateway, spec)
    gateway.channel.close()
    # The configured kill grace is 30 s; a lost controller does not wait for it.
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 20)
    assert wait_for(lambda: not process_alive(daemon), 10)
    # The worker still records what happened (after its sweep).
    result_path = Path(spec["flow_dir"]) / "result.json"
    assert wait_for(result_path.exists, 30)
    result = json.loads(result_path.read_text())
    assert result["status"] == "interrupted"
    assert result["leftover_processes"] >= 2


def test_exiting_the_gateway_kills_the_flow(
    gateway: Gateway, make_spec: Callable[..., dict[str, Any]]
) -> None:
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT])
    daemon = _start_tree(gateway, spec)
    gateway.gateway.exit()
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 20)
    assert wait_for(lambda: not process_alive(daemon), 10)
    assert wait_for(lambda: not process_alive(gateway.pid), 30)


def test_a_lost_controller_during_the_kill_grace_still_kills_the_flow(
    gateway: Gateway, make_spec: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """The flow timed out and ignores SIGTERM: the worker is waiting out a long kill grace when
    the controller goes away. The flow must still die within seconds, not outlive the worker."""
    marker = tmp_path / "got-term"
    script = f"trap 'echo yes > \"{marker}\"' TERM; while :; do sleep 0.05; done"
    spec = make_spec(["sh", "-c", script], timeout=1, grace=300)
    gateway.channel.send(("run", spec))
    gateway.receive("started")
    assert wait_for(marker.exists, 30), "the flow's timeout never fired"
    assert processes_with_cookie_prefix(spec["flow_id"])  # in its kill grace
    gateway.gateway.exit()
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 15), (
        "the flow survived its lost controller"
    )


def test_a_sigkilled_controller_takes_its_flows_along(
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT])
    controller = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER_SCRIPT, json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker_pid = 0
    try:
        assert controller.stdout is not None
        worker_pid = int(controller.stdout.readline())
        assert wait_for((Path(spec["flow_dir"]) / "started").exists, 30)
        assert wait_for(lambda: len(processes_with_cookie_prefix(spec["flow_id"])) >= 4, 30)
        daemon = int((Path(spec["flow_dir"]) / "daemon.pid").read_text())
        controller.kill()
        controller.wait(30)
        assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 20)
        assert wait_for(lambda: not process_alive(daemon), 10)
        assert wait_for(lambda: not process_alive(worker_pid), 30), (
            "the worker outlived its controller"
        )
    finally:
        if controller.poll() is None:
            controller.kill()
        controller.wait()
        if controller.stdout is not None:
            controller.stdout.close()
        if worker_pid and process_alive(worker_pid):  # cleanup only
            os.kill(worker_pid, signal.SIGKILL)


# A runner whose result cannot cross the channel or be written as JSON, as a bug could make it.
HOSTILE_RUNNER = """
def run(spec, control):
    how = spec["name"]
    if how == "too deep to send":
        deep = {}
        inner = deep
        for _ in range(400):
            inner["x"] = {}
            inner = inner["x"]
        return {"status": "passed", "message": "", "browser": deep}
    if how == "not json":
        return {"status": "passed", "message": "", "browser": {"pids": {1, 2}}}
    return {"status": "passed", "message": "", "metrics": {"score": float("nan")}}
"""

HOSTILE_WORKER = """
import sys
sys.path.insert(0, {path!r})
from pytest_runset.gateway import worker
from pytest_runset.gateway.runners import RUNNERS
RUNNERS["hostile"] = "hostile_runner"
worker.main(channel)
"""


@pytest.fixture
def hostile_gateway(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "hostile_runner.py").write_text(HOSTILE_RUNNER)
    group = execnet.Group()
    gateway = group.makegateway("popen")
    channel = gateway.remote_exec(HOSTILE_WORKER.format(path=str(tmp_path)))
    channel.send({"sys_path": []})
    kind, _ = channel.receive(RECEIVE_TIMEOUT_S)
    assert kind == "ready"
    yield channel
    group.terminate(timeout=10)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "too deep to send",
            "the flow's result could not be recorded (it cannot be sent: RecursionError: ",
        ),
        (
            "not json",
            "the flow's result could not be recorded (result.json: TypeError: Object of type "
            "set is not JSON serializable)",
        ),
        (
            "not finite",
            "malformed metrics: metrics.score is nan, not a finite number "
            "(JSON has no NaN/Infinity)",
        ),
    ],
)
def test_a_result_that_cannot_be_sent_or_written_still_ends_the_attempt(
    hostile_gateway: Any, tmp_path: Path, name: str, message: str
) -> None:
    spec = flow_spec(tmp_path, 1, f"rs-test-hostile-{uuid.uuid4().hex}", [], kind="hostile",
                     name=name, timeout=600, grace=1)  # fmt: skip
    hostile_gateway.send(("run", spec))
    kind, _ = hostile_gateway.receive(RECEIVE_TIMEOUT_S)
    assert kind == "started"
    # At once, not after the controller's backstop (the flow's 600 s timeout and more).
    kind, result = hostile_gateway.receive(RECEIVE_TIMEOUT_S)
    assert kind == "finished"
    assert result["status"] == "error"
    assert result["message"].startswith(message), result["message"]
    assert result["flow_id"] == spec["flow_id"]
    assert result["attempt"] == 1
    assert "it had ended passed: " in result["warnings"] or name == "not finite"
    # result.json is strict JSON whatever happened.
    written = (Path(spec["flow_dir"]) / "result.json").read_text()
    json.loads(written, parse_constant=lambda constant: pytest.fail(f"{constant} in result.json"))
    # The worker serves the next flow.
    spec = flow_spec(tmp_path, 2, f"rs-test-hostile-{uuid.uuid4().hex}", [], kind="hostile",
                     name="not finite", timeout=600, grace=1)  # fmt: skip
    hostile_gateway.send(("run", spec))
    assert hostile_gateway.receive(RECEIVE_TIMEOUT_S)[0] == "started"
    assert hostile_gateway.receive(RECEIVE_TIMEOUT_S)[0] == "finished"

"""The controller's pool of real execnet popen gateways: readiness, dispatch, crashes, kills,
replacement, cancellation and shutdown."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TREE_SCRIPT, flow_spec, process_alive, processes_with_cookie_prefix, wait_for
from pytest_runset.engine.pool import Event, Pool
from pytest_runset.gateway.proctree import sweep_cookie

EVENT_TIMEOUT_S = 60.0

# Starts a child and a double-forked daemon, records that it started, then exits 0 at once
# (leaving both behind) or hangs.


class Events:
    """Drain ``pool.events`` with generous bounds, keeping what was not asked for yet."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.seen: list[Event] = []

    def next(self, kind: str, slot: int | None = None, timeout: float = EVENT_TIMEOUT_S) -> Event:
        for index, event in enumerate(self.seen):
            if event.kind == kind and (slot is None or event.slot == slot):
                return self.seen.pop(index)
        deadline = timeout
        while True:
            try:
                event = self.pool.events.get(timeout=deadline)
            except queue.Empty:
                raise AssertionError(
                    f"no {kind!r} event for slot {slot} within {timeout}s; saw {self.seen}"
                ) from None
            if event.kind == kind and (slot is None or event.slot == slot):
                return event
            self.seen.append(event)


@pytest.fixture
def make_pool() -> Iterator[Callable[[int], tuple[Pool, Events]]]:
    pools: list[Pool] = []

    def make(size: int) -> tuple[Pool, Events]:
        pool = Pool(size)
        pools.append(pool)
        return pool, Events(pool)

    yield make
    for pool in pools:
        pids = [handle.pid for handle in pool.workers.values() if handle.pid]
        pool.shutdown()
        for pid in pids:  # cleanup only; test_shutdown_leaves_no_gateway asserts on this
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def make_spec(tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    cookies: list[str] = []

    def make(command: list[str], *, timeout: float = 60.0, grace: float = 1.0) -> dict[str, Any]:
        cookie = f"rs-test-pool-{uuid.uuid4().hex}"
        cookies.append(cookie)
        return flow_spec(tmp_path, len(cookies), cookie, command, timeout=timeout, grace=grace)

    yield make
    for cookie in cookies:
        sweep_cookie(cookie)  # cleanup only


def _ready_pool(
    make_pool: Callable[[int], tuple[Pool, Events]], size: int
) -> tuple[Pool, Events, dict[int, Event]]:
    pool, events = make_pool(size)
    pool.start()
    ready = {}
    for _ in range(size):
        event = events.next("ready")
        ready[event.slot] = event
    return pool, events, ready


def test_start_gives_one_ready_worker_per_slot(
    make_pool: Callable[[int], tuple[Pool, Events]],
) -> None:
    pool, _events, ready = _ready_pool(make_pool, 2)
    assert sorted(ready) == [0, 1]
    pids = {event.data["pid"] for event in ready.values()}
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert sorted(handle.worker_id for handle in pool.workers.values()) == ["gw0", "gw1"]
    for slot, event in ready.items():
        handle = pool.workers[slot]
        assert handle.ready
        assert handle.pid is not None
        assert handle.pid == event.data["pid"]
        assert handle.generation == event.generation
        assert pool.current(slot, event.generation)
        assert process_alive(handle.pid)
        # Each gateway leads its own process group, so it can be killed as one.
        assert os.getpgid(handle.pid) == handle.pid
        assert event.data["python"] == ".".join(map(str, sys.version_info[:3]))
        assert event.data["host"]
    assert ready[0].generation != ready[1].generation


def test_a_flow_runs_and_reports_back(
    make_pool: Callable[[int], tuple[Pool, Events]],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    pool, events, _ready = _ready_pool(make_pool, 2)
    spec = make_spec(["sh", "-c", 'echo "cookie=$RUNSET_FLOW_ID"'])
    assert pool.send(0, "run", spec)
    started = events.next("started", slot=0)
    assert started.data["flow_id"] == spec["flow_id"]
    finished = events.next("finished", slot=0)
    assert not [event for event in events.seen if event.kind == "finished"]
    result = finished.data
    assert result["status"] == "passed"
    assert result["exit_code"] == 0
    assert result["leftover_processes"] == 0
    assert result["flow_id"] == spec["flow_id"]
    assert result["attempt"] == 1
    assert result["duration_s"] >= 0
    assert result["started_at"] == started.data["started_at"]
    flow_dir = Path(spec["flow_dir"])
    on_disk = json.loads((flow_dir / "result.json").read_text(encoding="utf-8"))
    assert on_disk == result
    assert (flow_dir / "stdout.log").read_text() == f"cookie={spec['flow_id']}\n"
    assert [name for name in os.listdir(flow_dir) if name.endswith(".tmp")] == []


def test_two_flows_run_on_two_slots(
    make_pool: Callable[[int], tuple[Pool, Events]],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    pool, events, _ready = _ready_pool(make_pool, 2)
    specs = [make_spec(["sh", "-c", f"exit {code}"]) for code in (0, 3)]
    for slot, spec in enumerate(specs):
        assert pool.send(slot, "run", spec)
    results = {slot: events.next("finished", slot=slot).data for slot in (0, 1)}
    assert results[0]["status"] == "passed"
    assert results[0]["flow_id"] == specs[0]["flow_id"]
    assert results[1]["status"] == "failed"
    assert results[1]["message"] == "exit code 3"
    assert results[1]["flow_id"] == specs[1]["flow_id"]


def test_leftover_daemons_are_killed_and_counted(
    make_pool: Callable[[int], tuple[Pool, Events]],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    pool, events, _ready = _ready_pool(make_pool, 1)
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT, "exit"])
    assert pool.send(0, "run", spec)
    result = events.next("finished", slot=0).data
    assert result["status"] == "passed", result
    assert (Path(spec["flow_dir"]) / "started").exists()
    daemon = int((Path(spec["flow_dir"]) / "daemon.pid").read_text())
    assert result["leftover_processes"] >= 2  # the session-escaping child and the daemon
    assert any("leftover" in warning for warning in result["warnings"])
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 30)
    assert wait_for(lambda: not process_alive(daemon), 10)


def test_a_sigkilled_worker_is_reported_dead(
    make_pool: Callable[[int], tuple[Pool, Events]],
) -> None:
    _pool, events, ready = _ready_pool(make_pool, 2)
    os.kill(ready[1].data["pid"], signal.SIGKILL)
    died = events.next("died", slot=1)
    assert died.generation == ready[1].generation
    assert not [event for event in events.seen if event.kind == "died"]
    # The other worker is unaffected.
    assert process_alive(ready[0].data["pid"])


def test_kill_takes_down_the_gateway_process_group(
    make_pool: Callable[[int], tuple[Pool, Events]],
) -> None:
    pool, events, ready = _ready_pool(make_pool, 2)
    pid = ready[0].data["pid"]
    # Another member of the gateway's process group (same session, so setpgid is allowed).
    member = subprocess.Popen(["sleep", "600"], process_group=pid)
    try:
        assert os.getpgid(member.pid) == pid
        pool.kill(0)
        died = events.next("died", slot=0)
        assert died.generation == ready[0].generation
        assert wait_for(lambda: not process_alive(pid), 30)
        assert member.wait(30) == -signal.SIGKILL
        assert process_alive(ready[1].data["pid"])
    finally:
        if member.poll() is None:
            member.kill()
        member.wait()


def test_spawn_replaces_a_dead_worker(
    make_pool: Callable[[int], tuple[Pool, Events]],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    pool, events, ready = _ready_pool(make_pool, 2)
    old = ready[0]
    os.kill(old.data["pid"], signal.SIGKILL)
    events.next("died", slot=0)
    pool.kill(0)
    handle = pool.spawn(0)
    fresh = events.next("ready", slot=0)
    assert fresh.generation == handle.generation
    assert fresh.generation > max(event.generation for event in ready.values())
    assert fresh.data["pid"] != old.data["pid"]
    assert handle.worker_id == "gw2"
    assert pool.current(0, fresh.generation)
    assert not pool.current(0, old.generation)
    assert pool.workers[0].pid == fresh.data["pid"]
    # The replacement works.
    spec = make_spec(["true"])
    assert pool.send(0, "run", spec)
    finished = events.next("finished", slot=0)
    assert finished.generation == fresh.generation
    assert finished.data["status"] == "passed"


def test_cancel_interrupts_a_running_flow(
    make_pool: Callable[[int], tuple[Pool, Events]],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    pool, events, _ready = _ready_pool(make_pool, 1)
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT, "hang"], timeout=600)
    assert pool.send(0, "run", spec)
    events.next("started", slot=0)
    started = Path(spec["flow_dir"]) / "started"
    assert wait_for(started.exists, 30)
    assert len(processes_with_cookie_prefix(spec["flow_id"])) >= 3
    assert pool.send(0, "cancel", {"reason": "interrupted"})
    result = events.next("finished", slot=0).data
    assert result["status"] == "interrupted"
    assert result["message"] == "interrupted"
    assert result["leftover_processes"] >= 2
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 30)


def test_a_flow_timeout_inside_the_worker(
    make_pool: Callable[[int], tuple[Pool, Events]],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    pool, events, _ready = _ready_pool(make_pool, 1)
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT, "hang"], timeout=2, grace=0.5)
    assert pool.send(0, "run", spec)
    result = events.next("finished", slot=0).data
    assert result["status"] == "timeout"
    assert result["message"] == "timeout after 2s"
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 30)


def test_send_to_an_unknown_slot_fails_softly(
    make_pool: Callable[[int], tuple[Pool, Events]],
) -> None:
    pool, _events = make_pool(1)
    assert pool.send(5, "run", {}) is False
    pool.kill(5)  # nothing there: no exception


def test_shutdown_leaves_no_gateway(
    make_pool: Callable[[int], tuple[Pool, Events]],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    pool, _events, ready = _ready_pool(make_pool, 2)
    spec = make_spec([sys.executable, "-c", TREE_SCRIPT, "hang"], timeout=600, grace=30)
    assert pool.send(1, "run", spec)
    assert wait_for((Path(spec["flow_dir"]) / "started").exists, 30)
    pool.shutdown()
    pool.shutdown()  # idempotent
    pids: list[int] = [event.data["pid"] for event in ready.values()]
    assert wait_for(lambda: not any(process_alive(pid) for pid in pids), 30), "a gateway survived"
    # A flow that was running when the pool shut down does not survive it either.
    assert wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), 30)

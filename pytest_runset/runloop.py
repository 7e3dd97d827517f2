"""The controller's main loop: schedule flows onto the pool and replay results into pytest.

Everything here runs on pytest's main thread. The loop blocks on the pool's event queue with a
deadline (the nearest backstop), so it never busy-waits, and it is the only place where pytest
hooks are called for flows.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

from . import proctree
from .attempt import build_attempt
from .placeholders import PlaceholderError
from .pool import Event, Pool
from .replay import Replay
from .report import RunDirectory, build_report, iso_utc
from .scheduler import Scheduler
from .slugs import UnsafePathError, attempt_dir_name

if TYPE_CHECKING:
    from .collect import RunsetItem
    from .model import Flow, RunSet

# How long past a flow's own timeout + kill grace the controller waits before it stops trusting
# the worker, kills the gateway and moves on.
BACKSTOP_MARGIN_S = 10.0
# How long an interrupt waits for workers to stop their flows before killing gateways.
INTERRUPT_WAIT_S = 3.0


@dataclass
class FlowState:
    item: RunsetItem
    run: RunsetRun
    attempts: list[dict[str, Any]] = field(default_factory=list)
    logstarted: bool = False
    dispatched_at: float = 0.0
    cookie: str = ""
    backstop: float = 0.0
    worker_id: str = ""
    slot: int = -1
    env: dict[str, str] = field(default_factory=dict)
    entry: dict[str, Any] | None = None

    @property
    def flow(self) -> Flow:
        return self.item.flow


class RunsetRun:
    """One run-set file's run: its directory, journal and flow entries."""

    def __init__(self, runset: RunSet, directory: RunDirectory, base_url: str | None) -> None:
        self.runset = runset
        self.directory = directory
        self.base_url = base_url
        self.entries: dict[str, dict[str, Any]] = {}
        # Reports list flows in file order, whatever the completion order.
        self.order: dict[str, tuple[int, str]] = {}
        self.report_path: str | None = None
        self.report: dict[str, Any] | None = None

    @property
    def run_dir(self) -> str:
        return str(self.directory.path)


class Interrupted(Exception):
    """SIGTERM arrived; handled like Ctrl-C."""


class FlowRunLoop:
    def __init__(
        self,
        session: pytest.Session,
        *,
        items: list[RunsetItem],
        runs: dict[str, RunsetRun],
        workers: int,
        run_id: str,
        timeout_override: float | None,
        retries_override: int | None,
        max_restarts: int | None = None,
        backstop_margin: float = BACKSTOP_MARGIN_S,
    ) -> None:
        self.session = session
        self.config = session.config
        self.hook = session.config.hook
        self.items = items
        self.runs = runs
        self.run_id = run_id
        self.workers = max(1, min(workers, len(items))) if items else 1
        self.timeout_override = timeout_override
        self.retries_override = retries_override
        self.max_restarts = max_restarts if max_restarts is not None else 4 * self.workers
        self.restarts = 0
        self.backstop_margin = backstop_margin
        self.states: dict[str, FlowState] = {}
        self.pool = Pool(self.workers)
        self.scheduler = Scheduler([], self.workers)
        self.started_at = time.time()
        self.interrupted = False
        self.last_spawn_error = ""
        self.replay = Replay(self.config)
        # Workers that were given browser flows: their warm browsers are swept with them.
        self.browser_workers: set[str] = set()

    # -- entry point -----------------------------------------------------------------------
    def run(self, others: list[pytest.Item]) -> None:
        """Run ``self.items`` on the pool and ``others`` (ordinary tests) here, interleaved."""
        to_run: list[str] = []
        for item in self.items:
            state = FlowState(item=item, run=self.runs[str(item.runset.path)])
            self.states[item.nodeid] = state
            state.run.order[item.flow.slug] = (item.flow.index, item.flow.slug)
            skip = evaluate_skip_marks(item)
            if skip is not None:
                self._skip(state, skip.reason)
            else:
                to_run.append(item.nodeid)
        retries = {
            nodeid: (
                self.retries_override
                if self.retries_override is not None
                else self.states[nodeid].flow.retries
            )
            for nodeid in to_run
        }
        self.scheduler = Scheduler(to_run, self.workers, retries)
        for slot in range(self.workers):
            self.scheduler.slot_down(slot)
        previous_term = signal.getsignal(signal.SIGTERM)
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _raise_interrupted)
        try:
            if to_run:
                self.pool.start()
            for other, nextitem in _pairs(others):
                self.hook.pytest_runtest_protocol(item=other, nextitem=nextitem)
                self._check_stop()
                self._pump(block=False)
            while to_run and not self.scheduler.done():
                self._pump(block=True)
        except (KeyboardInterrupt, Interrupted):
            self.interrupted = True
            self._interrupt()
            raise KeyboardInterrupt from None
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous_term)
            try:
                self._finish_unstarted()
            finally:
                self.pool.shutdown()
                for worker_id in sorted(self.browser_workers):
                    self._sweep_browser(worker_id)

    # -- the loop --------------------------------------------------------------------------
    def _pump(self, block: bool) -> None:
        self._dispatch()
        timeout = self._next_wakeup() if block else 0.0
        try:
            event = self.pool.events.get(timeout=timeout)
        except queue.Empty:
            event = None
        while event is not None:
            self._handle(event)
            try:
                event = self.pool.events.get_nowait()
            except queue.Empty:
                event = None
        self._check_backstops()
        self._check_stop()

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        deadlines = [state.backstop for state in self._running_states()]
        if not deadlines:
            return 1.0
        return max(0.0, min(min(deadlines) - now, 1.0))

    def _running_states(self) -> Iterator[FlowState]:
        for task in self.scheduler.running.values():
            yield self.states[task.key]

    def _check_stop(self) -> None:
        if (self.session.shouldfail or self.session.shouldstop) and not self.scheduler.stopped:
            self.scheduler.stop()

    def _dispatch(self) -> None:
        for slot, task in self.scheduler.assignments():
            state = self.states[task.key]
            try:
                spec = self._spec(state, slot, task.attempt)
            except (PlaceholderError, UnsafePathError, OSError) as exc:
                self._attempt_done(state, slot, _local_result(task.attempt, "error", str(exc)))
                continue
            if not self.pool.send(slot, "run", spec):
                self._attempt_done(
                    state, slot, _local_result(task.attempt, "error", "worker unreachable")
                )
                continue
            if not state.logstarted:
                state.logstarted = True
                self.replay.logstart(state.item)

    def _spec(self, state: FlowState, slot: int, attempt: int) -> dict[str, Any]:
        state.dispatched_at = time.monotonic()
        handle = self.pool.workers[slot]
        state.slot = slot
        state.worker_id = handle.worker_id
        built = build_attempt(
            self.config,
            flow=state.flow,
            runset=state.run.runset,
            run_id=self.run_id,
            run_dir=state.run.directory.path,
            base_url=state.run.base_url,
            slot=slot,
            worker_id=handle.worker_id,
            attempt=attempt,
            timeout_override=self.timeout_override,
        )
        state.cookie = built.cookie
        state.env = built.env
        if built.spec.get("browser"):
            self.browser_workers.add(handle.worker_id)
        state.backstop = (
            state.dispatched_at + built.timeout_s + state.flow.kill_grace_s + self.backstop_margin
        )
        return built.spec

    # -- events ----------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if not self.pool.current(event.slot, event.generation):
            return  # a replaced gateway's last words
        if event.kind == "ready":
            self.scheduler.slot_up(event.slot)
        elif event.kind == "finished":
            task = self.scheduler.running.get(event.slot)
            if task is not None:
                self._attempt_done(self.states[task.key], event.slot, event.data)
            if event.data.get("retire"):
                # A flow's code is stuck inside the worker for good: give the slot a new one.
                self.scheduler.slot_down(event.slot)
                self.pool.kill(event.slot)
                self._sweep_browser(self.pool.workers[event.slot].worker_id)
                self._replace(event.slot)
        elif event.kind in ("died", "spawn_failed"):
            self._worker_lost(event)

    def _sweep_browser(self, worker_id: str) -> None:
        """Kill a killed or lost worker's warm browser: it runs in a process group of its own,
        so only its cookie finds it (see docs/reliability.md)."""
        if worker_id in self.browser_workers:
            proctree.sweep_cookie(proctree.browser_cookie(self.run_id, worker_id))

    def _worker_lost(self, event: Event) -> None:
        error = event.data.get("error", "")
        if event.kind == "spawn_failed":
            self.last_spawn_error = error
        task = self.scheduler.running.get(event.slot)
        self.scheduler.slot_down(event.slot)
        lost = self.pool.workers.get(event.slot)
        if lost is not None:
            self._sweep_browser(lost.worker_id)
        if task is not None:
            state = self.states[task.key]
            leftovers = proctree.sweep_cookie(state.cookie)
            result = _local_result(
                task.attempt,
                "error",
                f"worker crashed ({state.worker_id} exited while running the flow)",
            )
            result["leftover_processes"] = leftovers
            self._attempt_done(state, event.slot, result)
        self._replace(event.slot)

    def _replace(self, slot: int) -> None:
        if self.interrupted or self.scheduler.stopped:
            return
        if self.restarts >= self.max_restarts:
            self.scheduler.slot_lost(slot)
            return
        self.restarts += 1
        self.pool.kill(slot)
        self.pool.spawn(slot)

    def _check_backstops(self) -> None:
        now = time.monotonic()
        for slot, task in list(self.scheduler.running.items()):
            state = self.states[task.key]
            if now < state.backstop:
                continue
            # The worker did not answer in time: stop trusting it.
            self.pool.kill(slot)
            self._sweep_browser(state.worker_id)
            leftovers = proctree.sweep_cookie(state.cookie)
            timeout = self.timeout_override or state.flow.timeout_s
            result = _local_result(
                task.attempt,
                "timeout",
                f"timeout after {timeout:g}s (worker {state.worker_id} unresponsive; killed)",
            )
            result["leftover_processes"] = leftovers
            self.scheduler.slot_down(slot)
            self._attempt_done(state, slot, result)
            self._replace(slot)

    # -- results ---------------------------------------------------------------------------
    def _attempt_done(self, state: FlowState, slot: int, result: dict[str, Any]) -> None:
        result.setdefault("started_at", time.time())
        result.setdefault("duration_s", round(time.monotonic() - state.dispatched_at, 6))
        attempt = int(result.get("attempt") or len(state.attempts) + 1)
        result["attempt"] = attempt
        result["dir"] = attempt_dir_name(state.flow.slug, attempt)
        result["worker"] = state.worker_id
        state.attempts.append(result)
        retry = self.scheduler.finished(slot, str(result["status"]))
        if retry is None:
            self._finalize(state)

    def _finalize(self, state: FlowState) -> None:
        last = state.attempts[-1]
        status = str(last["status"])
        flaky = status == "passed" and len(state.attempts) > 1
        xfail = evaluate_xfail_marks(state.item)
        message = str(last.get("message") or "")
        if xfail is not None and status in ("passed", "failed", "error", "timeout"):
            if status == "passed":
                if xfail.strict:
                    status, message = "failed", f"[XPASS(strict)] {xfail.reason}".strip()
                else:
                    status = "xpassed"
            else:
                status, message = (
                    "xfailed",
                    f"{xfail.reason}: {message}" if xfail.reason else message,
                )
        entry = self._entry(state, status, message, flaky)
        state.entry = entry
        # Durable first: once pytest (and the user) hear of it, the journal has it.
        state.run.directory.journal({"event": "flow", **entry})
        state.run.entries[state.flow.slug] = entry
        self.hook.pytest_runset_flow_finished(config=self.config, result=entry)
        if not state.logstarted:
            state.logstarted = True
            self.replay.logstart(state.item)
        self.replay.finished(
            state.item,
            status=status,
            entry=entry,
            last=last,
            xfail_reason=xfail.reason if xfail else "",
            worker_id=state.worker_id,
            run_dir=state.run.run_dir,
        )

    def _entry(self, state: FlowState, status: str, message: str, flaky: bool) -> dict[str, Any]:
        last = state.attempts[-1]
        flow = state.flow
        dir_name = str(last["dir"])
        started_s = round(max(0.0, float(last["started_at"]) - self.started_at), 6)
        artifacts = [f"{dir_name}/{path}" for path in last.get("artifacts", [])]
        return {
            "name": flow.name,
            "slug": flow.slug,
            "nodeid": state.item.nodeid,
            "kind": flow.kind,
            "status": status,
            "attempts": len(state.attempts),
            "flaky": flaky,
            "duration_s": round(float(last.get("duration_s") or 0.0), 6),
            "started_s": started_s,
            "worker": state.worker_id,
            "slot": state.slot,
            "exit_code": last.get("exit_code"),
            "message": message,
            "dir": dir_name,
            "logs": {"stdout": f"{dir_name}/stdout.log", "stderr": f"{dir_name}/stderr.log"},
            "result": f"{dir_name}/result.json",
            "artifacts": artifacts,
            "persona": None,
            "ports": [],
            "tags": list(flow.tags),
            "leftover_processes": int(last.get("leftover_processes") or 0),
            "metrics": last.get("metrics", {}),
            "warnings": last.get("warnings", []),
            "history": [
                {
                    "attempt": attempt["attempt"],
                    "status": attempt["status"],
                    "dir": attempt["dir"],
                    "duration_s": attempt.get("duration_s"),
                    "exit_code": attempt.get("exit_code"),
                    "message": attempt.get("message", ""),
                }
                for attempt in state.attempts
            ],
        }

    def _skip(self, state: FlowState, reason: str) -> None:
        entry = _unstarted_entry(state, "skipped", reason)
        state.entry = entry
        state.run.directory.journal({"event": "flow", **entry})
        state.run.entries[state.flow.slug] = entry
        self.hook.pytest_runset_flow_finished(config=self.config, result=entry)
        self.replay.skipped(state.item, reason)

    # -- stopping --------------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Stop dispatch, cancel running flows, wait briefly, then kill what still runs."""
        self.scheduler.stop()
        for slot in self.scheduler.running:
            self.pool.send(slot, "cancel", {"reason": "interrupted"})
        grace = max(
            (self.states[t.key].flow.kill_grace_s for t in self.scheduler.running.values()),
            default=0.0,
        )
        deadline = time.monotonic() + min(grace, 10.0) + INTERRUPT_WAIT_S
        with _sigint_ignored():
            while self.scheduler.running and time.monotonic() < deadline:
                try:
                    event = self.pool.events.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if event.kind == "finished" and self.pool.current(event.slot, event.generation):
                    task = self.scheduler.running.get(event.slot)
                    if task is not None:
                        self._attempt_done(self.states[task.key], event.slot, event.data)
                elif event.kind in ("died", "spawn_failed"):
                    self._worker_lost(event)
            for slot, task in list(self.scheduler.running.items()):
                state = self.states[task.key]
                self.pool.kill(slot)
                self._sweep_browser(state.worker_id)
                leftovers = proctree.sweep_cookie(state.cookie)
                result = _local_result(task.attempt, "interrupted", "interrupted")
                result["leftover_processes"] = leftovers
                self.scheduler.slot_down(slot)
                self._attempt_done(state, slot, result)

    def _finish_unstarted(self) -> None:
        """Flows that never got to run: ``not_run`` (journaled, not reported to pytest)."""
        reason = "not run: run interrupted" if self.interrupted else "not run: dispatch stopped"
        if self.last_spawn_error and not self.scheduler.stopped:
            reason = f"not run: no worker could be started ({self.last_spawn_error})"
        for state in self.states.values():
            if state.entry is not None:
                continue
            entry = self._entry_not_run(state, reason)
            state.entry = entry
            with contextlib.suppress(Exception):
                state.run.directory.journal({"event": "flow", **entry})
            state.run.entries[state.flow.slug] = entry

    def _entry_not_run(self, state: FlowState, reason: str) -> dict[str, Any]:
        if state.attempts:
            return self._entry(state, "interrupted", "interrupted", False)
        return _unstarted_entry(state, "not_run", reason)

    def write_reports(self) -> None:
        finished = time.time()
        for run in self.runs.values():
            flows = [run.entries[slug] for slug in sorted(run.entries, key=run.order.__getitem__)]
            report = build_report(
                run_id=run.directory.run_id,
                runset={
                    "name": run.runset.name,
                    "file": str(run.runset.path),
                    "sha256": run.runset.sha256,
                },
                flows=flows,
                started_at=self.started_at,
                finished_at=finished,
                workers=self.workers,
                interrupted=self.interrupted,
            )
            run.report_path = str(run.directory.write_report(report))
            run.report = report
            run.directory.journal({"event": "report", "finished_at": iso_utc(finished)})
            self.hook.pytest_runset_report(config=self.config, report=report)


def _unstarted_entry(state: FlowState, status: str, message: str) -> dict[str, Any]:
    """The report entry of a flow that never started (skipped, not run)."""
    return {
        "name": state.flow.name,
        "slug": state.flow.slug,
        "nodeid": state.item.nodeid,
        "kind": state.flow.kind,
        "status": status,
        "attempts": 0,
        "flaky": False,
        "duration_s": 0.0,
        "started_s": None,
        "worker": None,
        "slot": None,
        "exit_code": None,
        "message": message,
        "dir": None,
        "logs": {},
        "result": None,
        "artifacts": [],
        "persona": None,
        "ports": [],
        "tags": list(state.flow.tags),
        "leftover_processes": 0,
        "metrics": {},
        "warnings": [],
        "history": [],
    }


def _pairs(items: list[pytest.Item]) -> Iterator[tuple[pytest.Item, pytest.Item | None]]:
    for index, item in enumerate(items):
        yield item, items[index + 1] if index + 1 < len(items) else None


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """A second Ctrl-C must not abandon the clean-up that keeps processes from leaking."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _local_result(attempt: int, status: str, message: str) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "status": status,
        "exit_code": None,
        "message": message,
        "metrics": {},
        "artifacts": [],
        "warnings": [],
        "leftover_processes": 0,
    }

"""The controller's main loop: schedule flows onto the pool and replay results into pytest.

Everything here runs on pytest's main thread. The loop blocks on the pool's event queue with a
deadline (the nearest backstop), so it never busy-waits, and it is the only place where pytest
hooks are called for flows.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.skipping import evaluate_skip_marks

from pytest_runset.engine.attempt import AttemptError
from pytest_runset.engine.entries import flow_entry, local_result, unstarted_entry
from pytest_runset.engine.interrupts import InterruptGate, sigint_ignored
from pytest_runset.engine.lifecycle import CANNOT_START, conclude, prepare_attempt, record_attempt
from pytest_runset.engine.pool import Event, Pool
from pytest_runset.engine.scheduler import Scheduler, Task, order_keys
from pytest_runset.engine.state import FlowState, RunsetRun
from pytest_runset.gateway import proctree
from pytest_runset.gateway.transfer import Receiver
from pytest_runset.resources.leases import Leaser, lock_directory
from pytest_runset.resources.requirements import acquire, needs_leases
from pytest_runset.resources.services import ServiceError
from pytest_runset.results.report import FAILING_STATUSES
from pytest_runset.results.syncer import JournalSyncer
from pytest_runset.session import history
from pytest_runset.session.progress import Counts, LiveStatus, live_status
from pytest_runset.session.replay import Replay, through_protocol
from pytest_runset.session.runs import (
    journal_start,
    start_services,
    stop_services,
    write_run_report,
)
from pytest_runset.session.scaleout import Scaleout, remote_spec

if TYPE_CHECKING:
    from pytest_runset.session.collect import RunsetItem

# How long past a flow's own timeout + kill grace the controller waits before it stops trusting
# the worker, kills the gateway and moves on.
BACKSTOP_MARGIN_S = 10.0
# How long an interrupt waits for workers to stop their flows before killing gateways.
INTERRUPT_WAIT_S = 3.0
# The longest the loop blocks at once: a Ctrl-C held back by a critical section waits this long.
INTERRUPT_LATENCY_S = 0.25


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
        global_timeout: float | None = None,
        fail_on_flaky: bool = False,
        leaser: Leaser | None = None,
        scaleout: Scaleout | None = None,
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
        self.scaleout = scaleout
        if scaleout is not None:
            self.pool = Pool(self.workers, scaleout.gateways, scaleout.proxies)
        else:
            self.pool = Pool(self.workers)
        self.scheduler = Scheduler([], self.workers)
        self.started_at = time.time()
        self.interrupted = False
        self.last_spawn_error = ""
        self.replay = Replay(self.config)
        # The live status line (TTY only); hidden before every hook call, which may print.
        self.status: LiveStatus | None = live_status(self.config)
        self.gate = InterruptGate()
        self.leaser = leaser
        self.fail_on_flaky = fail_on_flaky
        self.global_timeout = global_timeout
        self.global_deadline = (
            time.monotonic() + global_timeout if global_timeout is not None else None
        )
        self.global_expired = False
        self.restarts_exhausted = False
        # Slots whose gateway was refused (another release or Python): never replaced.
        self.refused: set[int] = set()
        self.markers: list[Path] = []
        for item in items:
            state = FlowState(item=item, run=runs[str(item.runset.path)])
            self.states[item.nodeid] = state
            state.run.order[item.flow.slug] = (item.flow.index, item.flow.slug)
        # Workers that were given browser flows: their warm browsers are swept with them.
        self.browser_workers: set[str] = set()
        # Flows journaled (not yet fsynced) that pytest has not heard of yet, numbered.
        self._unannounced: list[tuple[int, FlowState, str, dict[str, Any], str]] = []
        self._journaled = 0
        self._group_commit = False
        self._syncer: JournalSyncer | None = None

    # -- entry point -----------------------------------------------------------------------
    def run(self, others: list[pytest.Item]) -> None:
        """Run ``self.items`` on the pool and ``others`` (ordinary tests) here, interleaved.

        However it ends (done, Ctrl-C, SIGTERM, an error), every flow ends up with an entry:
        :meth:`write_reports` accounts for those that never ran.
        """
        try:
            with self.gate.installed():
                self._run(others)
        except KeyboardInterrupt:
            self._before_output()
            self.interrupted = True
            self._stop_syncer()
            self._interrupt()
            raise
        finally:
            try:
                self._stop_syncer()
                self.pool.shutdown()
                for worker_id in sorted(self.browser_workers):
                    self._sweep_browser(worker_id)
            finally:
                self._before_output()
                self._stop_services()
                for marker in self.markers:
                    marker.unlink(missing_ok=True)

    def _run(self, others: list[pytest.Item]) -> None:
        to_run: list[str] = []
        for item in self.items:
            state = self.states[item.nodeid]
            done = state.run.previous.get(item.flow.slug)
            if done is not None:
                self._resumed(state, done)
                continue
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
        # Longest first by the duration history (reports keep file order); with --ff, the
        # flows that failed last time go first.
        to_run = order_keys(
            to_run, history.durations(self.config, to_run), first=self._failed_last_time(to_run)
        )
        exclusive = [key for key in to_run if self.states[key].flow.exclusive]
        self.scheduler = Scheduler(to_run, self.workers, retries, exclusive=exclusive)
        for run in self.runs.values():
            if run.started_at is None:
                journal_start(run, self.started_at)
            else:
                run.directory.journal({"event": "resume", "at": time.time()})
        for slot in range(self.workers):
            self.scheduler.slot_down(slot)
        if to_run:
            self.pool.start()
            self._start_services()
        for other, nextitem in _pairs(others):
            self._before_output()
            self.hook.pytest_runtest_protocol(item=other, nextitem=nextitem)
            self._check_stop()
            self._pump(block=False)
        self._syncer = JournalSyncer([run.directory for run in self.runs.values()], self._on_synced)
        while to_run and not self.scheduler.done():
            self._pump(block=True)
        self._stop_syncer()
        self._announce()

    def _on_synced(self, upto: int, problem: str) -> None:
        # The syncer's thread: only an event for the loop.
        self.pool.events.put(Event(-1, 0, "synced", {"upto": upto, "problem": problem}))

    def _stop_syncer(self) -> None:
        if self._syncer is not None:
            self._syncer.close()
            self._syncer = None

    # -- services --------------------------------------------------------------------------
    def _start_services(self) -> None:
        """Start each run's services before its first flow; a failure fails its flows."""
        for run in self.runs.values():
            try:
                start_services(run, self.run_id, self._leaser)
            except ServiceError as exc:
                if exc.cancelled:
                    raise KeyboardInterrupt from None
                self._service_failed(run, exc)

    def _leaser(self) -> Leaser:
        if self.leaser is None:
            self.leaser = Leaser(lock_directory())
        return self.leaser

    def _check_services(self) -> None:
        for run in self.runs.values():
            if run.services is None or run.service_error is not None:
                continue
            problem = run.services.check_alive()
            if problem is not None:
                self._service_failed(run, problem)

    def _service_failed(self, run: RunsetRun, problem: ServiceError) -> None:
        """Every flow of the run that has not ended becomes ``error`` with the service's log."""
        run.service_error = str(problem).split("\n", 1)[0]
        keys = [key for key, state in self.states.items() if state.run is run]
        for slot, task in self.scheduler.running.items():
            if task.key in keys:
                self.pool.send(slot, "cancel", {"reason": run.service_error, "status": "error"})
        tail = str(problem).split("\n", 1)[1] if "\n" in str(problem) else ""
        for task in self.scheduler.drop(keys):
            self._end_unstarted(
                task,
                run.service_error,
                stderr_tail=tail,
                tail_source=f"services/{problem.name}.log",
            )

    def _stop_services(self) -> None:
        for run in self.runs.values():
            stop_services(run)

    # -- the loop --------------------------------------------------------------------------
    def _pump(self, block: bool) -> None:
        # One critical section: an interrupt waits for the end of the bookkeeping it would
        # otherwise tear (an event taken off the queue but not recorded, say).
        with self.gate.critical():
            self._dispatch()
            self._show_status()
            timeout = self._next_wakeup() if block else 0.0
            try:
                event = self.pool.events.get(timeout=timeout)
            except queue.Empty:
                event = None
            # Every event already queued is handled before pytest hears of any: their flows'
            # journal lines then share one fsync (a group commit).
            self._group_commit = True
            try:
                while event is not None:
                    self._handle(event)
                    try:
                        event = self.pool.events.get_nowait()
                    except queue.Empty:
                        event = None
                # Freed workers start their next flow before the fsync.
                self._dispatch()
            finally:
                self._group_commit = False
                if self._syncer is not None:
                    self._syncer.request(self._journaled)
                else:
                    self._announce()
            self._check_global_timeout()
            self._check_services()
            self._check_backstops()
            self._check_stop()
            self._show_status()

    # -- live status -----------------------------------------------------------------------
    def _show_status(self) -> None:
        if self.status is None:
            return
        done = sum(1 for state in self.states.values() if state.entry is not None)
        self.status.show(
            Counts(
                running=len(self.scheduler.running),
                queued=self.scheduler.pending_count,
                done=done,
                total=len(self.states),
            )
        )

    def _before_output(self) -> None:
        """Erase the live status: a hook (pytest's terminal, any plugin) may print next."""
        if self.status is not None:
            self.status.hide()

    def _check_global_timeout(self) -> None:
        """At the run's deadline: start nothing more and stop what runs, as ``timeout``."""
        if self.global_deadline is None or self.global_expired:
            return
        if time.monotonic() < self.global_deadline:
            return
        self.global_expired = True
        self.scheduler.stop()
        reason = f"the run's global timeout of {self.global_timeout:g}s expired"
        for slot, task in self.scheduler.running.items():
            state = self.states[task.key]
            self.pool.send(slot, "cancel", {"reason": reason, "status": "timeout"})
            # The worker now has its kill grace to answer before the backstop takes over.
            state.backstop = min(
                state.backstop, time.monotonic() + state.flow.kill_grace_s + self.backstop_margin
            )

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        deadlines = [state.backstop for state in self._running_states()]
        if self.global_deadline is not None and not self.global_expired:
            deadlines.append(self.global_deadline)
        if not deadlines:
            return INTERRUPT_LATENCY_S
        return max(0.0, min(min(deadlines) - now, INTERRUPT_LATENCY_S))

    def _running_states(self) -> Iterator[FlowState]:
        for task in self.scheduler.running.values():
            yield self.states[task.key]

    def _check_stop(self) -> None:
        if (self.session.shouldfail or self.session.shouldstop) and not self.scheduler.stopped:
            self.scheduler.stop()

    def _ready(self, task: Task) -> str | None:
        """Take the flow's leases if they are free; else say what it waits for."""
        state = self.states[task.key]
        if self.leaser is None or not needs_leases(state.flow, state.run.runset):
            return None
        lease, reason = acquire(self.leaser, state.run.runset, state.flow)
        state.lease = lease
        return reason

    def _dispatch(self) -> None:
        if any(entry[2] in FAILING_STATUSES for entry in self._unannounced):
            # A failure waits to be reported, which may stop dispatch (-x, --maxfail).
            return
        # A failure reported a moment ago (a "synced" event) may have stopped the session.
        self._check_stop()
        now = time.monotonic()
        limit = self._lease_wait_limit
        for task, reason, waited in self.scheduler.expired_waits(now, limit):
            self._end_unstarted(task, f"{reason} for {waited:.0f}s")
        for slot, task in self.scheduler.assignments(ready=self._ready, now=now):
            state = self.states[task.key]
            try:
                spec = self._spec(state, slot, task.attempt)
            except CANNOT_START as exc:
                self._attempt_done(state, slot, local_result(task.attempt, "error", str(exc)))
                continue
            if not self.pool.send(slot, "run", spec):
                self._attempt_done(
                    state, slot, local_result(task.attempt, "error", "worker unreachable")
                )
                continue
            if not state.logstarted:
                state.logstarted = True
                self._before_output()
                self.replay.logstart(state.item)

    def _failed_last_time(self, keys: list[str]) -> set[str]:
        cache = getattr(self.config, "cache", None)
        if cache is None or not self.config.getoption("failedfirst", False):
            return set()
        lastfailed = cache.get("cache/lastfailed", {})
        return {key for key in keys if key in lastfailed}

    def _lease_wait_limit(self, key: str) -> float:
        # A flow waits for its leases at most as long as it may run.
        return self.timeout_override or self.states[key].flow.timeout_s

    def _spec(self, state: FlowState, slot: int, attempt: int) -> dict[str, Any]:
        handle = self.pool.workers[slot]
        if handle.remote and state.flow.workspace != "none":
            raise AttemptError(
                f"workspace = {state.flow.workspace!r} needs a gateway on this machine "
                f"({handle.worker_id} is remote)"
            )
        built = prepare_attempt(
            self.config,
            state,
            slot=slot,
            worker_id=handle.worker_id,
            attempt=attempt,
            run_id=self.run_id,
            timeout_override=self.timeout_override,
            lock_dir=self._lock_dir,
        )
        if built.spec.get("browser"):
            self.browser_workers.add(handle.worker_id)
        state.backstop = (
            state.dispatched_at + built.timeout_s + state.flow.kill_grace_s + self.backstop_margin
        )
        if handle.remote and self.scaleout is not None:
            return self._remote_spec(handle, state, built.spec)
        return built.spec

    def _remote_spec(self, handle: Any, state: FlowState, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec with the remote host's paths; its files come back into the flow dir."""
        assert self.scaleout is not None
        if not handle.scratch:
            raise AttemptError(f"{handle.worker_id} reported no scratch directory")
        handle.receiver = Receiver(str(spec["flow_dir"]), self.scaleout.max_bytes)
        if state.ports:
            # Ports are host-local: the worker holds them on its host as well.
            spec = {**spec, "host_ports": {"ports": state.ports, "marker": self._marker()}}
        mapped = remote_spec(
            spec,
            host=str(handle.host),
            scratch=str(handle.scratch),
            run_dir=state.run.directory.path,
            runset_dir=state.run.runset.directory,
            remote_root=self.scaleout.remote_root,
            max_bytes=self.scaleout.max_bytes,
        )
        handle.receiver.source = str(mapped["flow_dir"])
        return mapped

    # -- events ----------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if event.kind == "synced":
            self._announce(None if event.data["problem"] else int(event.data["upto"]))
            return
        if not self.pool.current(event.slot, event.generation):
            return  # a replaced gateway's last words
        if event.kind == "ready":
            self.scheduler.slot_up(event.slot)
        elif event.kind == "refused":
            # A gateway of another release or Python: never used, the others go on.
            self.last_spawn_error = str(event.data.get("error"))
            self.scheduler.slot_lost(event.slot)
            self.refused.add(event.slot)
            self._say(f"runset: gateway refused: {self.last_spawn_error}")
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
            result = local_result(
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
            self.restarts_exhausted = True
            self.scheduler.slot_lost(slot)
            return
        self.restarts += 1
        self.pool.kill(slot)
        self.pool.spawn(slot)

    def _check_backstops(self) -> None:
        now = time.monotonic()
        for slot, task in list(self.scheduler.running.items()):
            state = self.states[task.key]
            if now < state.backstop or self._receiving(slot, now):
                continue
            # The worker did not answer in time: stop trusting it.
            timeout = self.timeout_override or state.flow.timeout_s
            self._abandon(
                slot,
                task,
                "timeout",
                f"timeout after {timeout:g}s (worker {state.worker_id} unresponsive; killed)",
            )
            self._replace(slot)

    def _receiving(self, slot: int, now: float) -> bool:
        """A remote flow's files still arriving (a large transfer may outlast the backstop)."""
        receiver = self.pool.workers[slot].receiver
        last = receiver.last_chunk_at if receiver is not None else None
        return last is not None and now - last < self.backstop_margin

    def _abandon(self, slot: int, task: Task, status: str, message: str) -> None:
        """End the attempt on ``slot`` without its worker: kill the gateway, sweep the flow's
        processes (and the worker's browser), and record ``status``."""
        state = self.states[task.key]
        remote = self.pool.workers[slot].remote
        # A remote host's processes are swept through its gateway, before it is killed.
        leftovers = self.pool.sweep(slot, state.cookie) if remote else 0
        self.pool.kill(slot)
        self._sweep_browser(state.worker_id)
        result = local_result(task.attempt, status, message)
        result["leftover_processes"] = leftovers or proctree.sweep_cookie(state.cookie)
        self.scheduler.slot_down(slot)
        self._attempt_done(state, slot, result)

    def _end_unstarted(self, task: Task, message: str, **extra: Any) -> None:
        """A flow that ends as ``error`` before any worker ran this attempt."""
        state = self.states[task.key]
        result = local_result(task.attempt, "error", message)
        result.update(duration_s=0.0, started_at=time.time(), dir=None, worker="", **extra)
        state.attempts.append(result)
        self._finalize(state)

    @property
    def no_usable_gateway(self) -> bool:
        return bool(self.refused) and len(self.refused) >= self.workers

    def _marker(self) -> str:
        """A file in the controller's lock directory that tells a worker on the same host (or
        sharing the directory) that the controller's port leases already hold there."""
        marker = self._lock_dir() / f"controller-{self.run_id}-{os.getpid()}.marker"
        if not marker.exists():
            marker.touch()
            self.markers.append(marker)
        return marker.name

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    # -- results ---------------------------------------------------------------------------
    def _lock_dir(self) -> Path:
        return self._leaser().lock_dir

    def _attempt_done(self, state: FlowState, slot: int, result: dict[str, Any]) -> None:
        result = record_attempt(state, result, self._lock_dir)
        status = str(result["status"])
        # A flow whose service died is not retried against the dead service.
        retry = self.scheduler.finished(slot, "aborted" if state.run.service_error else status)
        if retry is None:
            self._finalize(state)

    def _finalize(self, state: FlowState) -> None:
        outcome = conclude(state, fail_on_flaky=self.fail_on_flaky, session_started=self.started_at)
        entry = outcome.entry
        state.run.entries[state.flow.slug] = entry
        state.entry = entry
        # Durable first: once pytest (and the user) hear of it, the journal has it. Flows that
        # end together share one fsync (see _pump); pytest hears of them after it.
        state.run.directory.journal({"event": "flow", **entry}, sync=False)
        self._journaled += 1
        self._unannounced.append(
            (self._journaled, state, outcome.status, outcome.last, outcome.xfail_reason)
        )
        if not self._group_commit:
            self._announce()

    def _announce(self, durable: int | None = None) -> None:
        """Tell pytest about the flows that ended, once their journal lines are durable.

        ``durable`` is how far the syncer's thread made the journal durable; without it, the
        journal is synced here first and every pending flow is told.
        """
        if not self._unannounced:
            return
        if durable is None:
            for run in self.runs.values():
                run.directory.sync(force=True)
            durable = self._journaled
        pending = [entry for entry in self._unannounced if entry[0] <= durable]
        self._unannounced = self._unannounced[len(pending) :]
        for _, state, status, last, xfail_reason in pending:
            entry = state.entry
            assert entry is not None
            self._before_output()
            self.hook.pytest_runset_flow_finished(config=self.config, result=entry)
            if not state.logstarted:
                state.logstarted = True
                self.replay.logstart(state.item)
            through_protocol(
                state.item,
                functools.partial(
                    self.replay.finished,
                    state.item,
                    status=status,
                    entry=entry,
                    last=last,
                    xfail_reason=xfail_reason,
                    worker_id=state.worker_id,
                    run_dir=state.run.run_dir,
                ),
            )

    def _resumed(self, state: FlowState, entry: dict[str, Any]) -> None:
        """A flow an earlier session of this run finished: reported again, never re-run."""
        state.entry = entry
        state.run.entries[state.flow.slug] = entry
        self._before_output()
        self.hook.pytest_runset_flow_finished(config=self.config, result=entry)
        through_protocol(
            state.item,
            functools.partial(self.replay.resumed, state.item, entry, run_dir=state.run.run_dir),
        )

    def _skip(self, state: FlowState, reason: str) -> None:
        entry = unstarted_entry(state.flow, state.item.nodeid, "skipped", reason)
        state.entry = entry
        state.run.directory.journal({"event": "flow", **entry})
        state.run.entries[state.flow.slug] = entry
        self._before_output()
        self.hook.pytest_runset_flow_finished(config=self.config, result=entry)
        through_protocol(
            state.item,
            functools.partial(
                self.replay.skipped, state.item, reason, entry=entry, run_dir=state.run.run_dir
            ),
        )

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
        with sigint_ignored():
            # Flows that ended before the interrupt are reported first, as they ended.
            self._announce()
            while self.scheduler.running and time.monotonic() < deadline:
                try:
                    event = self.pool.events.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                # Dispatch is stopped, so this only records results and lost workers.
                self._handle(event)
            for slot, task in list(self.scheduler.running.items()):
                self._abandon(slot, task, "interrupted", "interrupted")

    def _finish_unstarted(self) -> None:
        """Flows that never got to run: ``not_run`` (journaled, not reported to pytest)."""
        reason = "not run: run interrupted" if self.interrupted else "not run: dispatch stopped"
        if self.global_expired:
            reason = f"not run: the run's global timeout of {self.global_timeout:g}s expired"
        elif self.restarts_exhausted and not self.scheduler.stopped:
            reason = (
                f"not run: no worker left (workers were replaced {self.restarts} times, "
                "the limit; see runset_max_restarts)"
            )
        elif self.last_spawn_error and not self.scheduler.stopped:
            reason = f"not run: no worker could be started ({self.last_spawn_error})"
        for state in self.states.values():
            if state.entry is not None or state.flow.slug in state.run.entries:
                continue
            entry = self._entry_not_run(state, reason)
            state.entry = entry
            with contextlib.suppress(Exception):
                state.run.directory.journal({"event": "flow", **entry})
            state.run.entries[state.flow.slug] = entry

    def _entry_not_run(self, state: FlowState, reason: str) -> dict[str, Any]:
        if state.attempts:
            return flow_entry(state, "interrupted", "interrupted", False, self.started_at)
        return unstarted_entry(state.flow, state.item.nodeid, "not_run", reason)

    def write_reports(self) -> None:
        """One ``report.json`` per run-set; a second Ctrl-C cannot cut this short."""
        self._before_output()
        with sigint_ignored():
            self._write_reports()

    def _write_reports(self) -> None:
        self._finish_unstarted()
        finished = time.time()
        for run in self.runs.values():
            write_run_report(
                self.config,
                run,
                session_started=self.started_at,
                workers=self.workers,
                interrupted=self.interrupted,
                finished_at=finished,
            )


def _pairs(items: list[pytest.Item]) -> Iterator[tuple[pytest.Item, pytest.Item | None]]:
    for index, item in enumerate(items):
        yield item, items[index + 1] if index + 1 < len(items) else None

"""The controller's main loop: schedule flows onto the pool and replay results into pytest.

Everything here runs on pytest's main thread. The loop blocks on the pool's event queue with a
deadline (the nearest backstop), so it never busy-waits, and it is the only place where pytest
hooks are called for flows.
"""

from __future__ import annotations

import functools
import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_runset.engine.entries import local_result, unstarted_result
from pytest_runset.engine.interrupts import InterruptGate, sigint_ignored
from pytest_runset.engine.lifecycle import CANNOT_START, record_attempt
from pytest_runset.engine.marks import skip_reason
from pytest_runset.engine.pool import Event, Pool
from pytest_runset.engine.pool_supervision import PoolSupervisor
from pytest_runset.engine.scheduler import Scheduler, Task, order_keys
from pytest_runset.engine.state import FlowState, RunsetRun
from pytest_runset.engine.supervision import (
    UNREACHABLE,
    GlobalDeadline,
    Restarts,
    Supervision,
)
from pytest_runset.gateway.protocol import AttemptResult
from pytest_runset.resources.leases import Leaser, lock_directory
from pytest_runset.resources.requirements import acquire, needs_leases
from pytest_runset.resources.services import ServiceError
from pytest_runset.results.storage import StorageError
from pytest_runset.results.syncer import JournalSyncer
from pytest_runset.session import history
from pytest_runset.session.announcer import FlowAnnouncer
from pytest_runset.session.attempt_specs import AttemptSpecs
from pytest_runset.session.containment import (
    containment_plan,
    record_paused,
    run_containment,
)
from pytest_runset.session.flow_fixtures import flow_fixtures
from pytest_runset.session.hangup import silence_dead_terminal
from pytest_runset.session.live_control import RunControl
from pytest_runset.session.pausing import PauseDriver
from pytest_runset.session.progress import LiveStatus, live_status, running_counts
from pytest_runset.session.runs import (
    journal_start,
    record_service_failure,
    start_services,
    stop_services,
    write_run_reports,
)
from pytest_runset.session.scaleout import Scaleout
from pytest_runset.session.settings import Settings
from pytest_runset.session.unrun import left_without_workers, not_run_reason

if TYPE_CHECKING:
    from pytest_runset.session.collect import RunsetItem

# How long an interrupt waits for workers to stop their flows before killing gateways.
INTERRUPT_WAIT_S = 3.0
# The longest the loop blocks at once: a Ctrl-C held back by a critical section waits this long.
INTERRUPT_LATENCY_S = 0.25


class FlowRunLoop:
    scheduling: type[Scheduler] = Scheduler  # a QueueScheduler with --runset-queue

    def __init__(
        self,
        session: pytest.Session,
        *,
        items: list[RunsetItem],
        runs: dict[str, RunsetRun],
        workers: int,
        run_id: str,
        settings: Settings,
        leaser: Leaser | None = None,
        scaleout: Scaleout | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.session = session
        self.config = session.config
        self.hook = session.config.hook
        self.items = items
        self.runs = runs
        self.run_id = run_id
        self.workers = max(1, min(workers, len(items))) if items else 1
        self.timeout_override = settings.timeout_override
        self.retries_override = settings.retries_override
        self.retry_delay = settings.retry_delay
        self.states: dict[str, FlowState] = {}
        self.scaleout = scaleout
        specs = (scaleout.gateways, scaleout.proxies) if scaleout else (None, None)
        self.pool = pool or Pool(self.workers, *specs)  # given: the debugger's (debugging.py)
        self.scheduler = Scheduler([], self.workers)
        self.started_at = time.time()
        # The live status line (TTY only); hidden before every hook call, which may print.
        self.status: LiveStatus | None = live_status(self.config)
        self.gate = InterruptGate(functools.partial(silence_dead_terminal, self.config))
        self.leaser = leaser
        max_restarts = settings.max_restarts
        self.supervision = Supervision(
            margin=settings.backstop_margin,
            deadline=GlobalDeadline.starting(time.time(), settings.global_timeout),
            restarts=Restarts(max_restarts if max_restarts is not None else 4 * self.workers),
        )
        self.live = PauseDriver(
            RunControl([run.directory.path for run in runs.values()], run_id),
            self.pool,
            self.supervision,
            lambda: [(s, self.states[t.key].watch) for s, t in self.scheduler.running.items()],
            functools.partial(record_paused, self.config),
        )
        self.live.before_stopping = functools.partial(self._show_status, force=True)
        # `pytest-runset stop --drain`: running flows finish, nothing new starts.
        self.drained = False
        for item in items:
            state = FlowState(item=item, flow=item.flow, run=runs[str(item.runset.path)])
            self.states[item.nodeid] = state
            state.run.order[item.flow.slug] = (item.flow.index, item.flow.slug)
        self.specs = AttemptSpecs(
            self.config,
            pool=self.pool,
            run_id=run_id,
            timeout_override=self.timeout_override,
            supervision=self.supervision,
            scaleout=scaleout,
            lock_dir=self._lock_dir,
            containment=containment_plan(self.config),
        )
        self.watchdog = PoolSupervisor(
            self.pool,
            self.supervision,
            self.states,
            scheduler=lambda: self.scheduler,
            run_id=run_id,
            timeout_override=self.timeout_override,
            browser_workers=self.specs.browser_workers,
            attempt_done=self._attempt_done,
            say=self._say,
            group=getattr(run_containment(self.config), "key", None),
        )
        self.announcer = FlowAnnouncer(
            self.config,
            runs=runs,
            items={item.nodeid: item for item in items},
            fail_on_flaky=settings.fail_on_flaky,
            started_at=self.started_at,
            before_output=self._before_output,
        )
        self._syncer: JournalSyncer | None = None
        # The storage error that stopped the run, if one did (see run()).
        self.storage_error: StorageError | None = None

    # -- entry point -----------------------------------------------------------------------
    def run(self, others: list[pytest.Item]) -> None:
        """Run ``self.items`` on the pool and ``others`` (ordinary tests) here, interleaved.

        However it ends (done, Ctrl-C, SIGTERM, an error), every flow ends up with an entry:
        :meth:`write_reports` accounts for those that never ran.
        """
        try:
            with self.gate.installed(), self.live.signals():
                self._run(others)
        except (KeyboardInterrupt, StorageError) as exc:
            self._before_output()
            self.interrupted = True
            # The disk refused the run's own files: stopped as an interrupt is; the driver then
            # ends the session with one line naming the file (exit code 2).
            self.storage_error = exc if isinstance(exc, StorageError) else None
            self.announcer.storage_stopped = self.storage_error is not None
            self._stop_syncer()
            self._interrupt()
            if self.storage_error is None:
                raise
        finally:
            try:
                self._stop_syncer()
                self.pool.shutdown()
                for worker_id in sorted(self.specs.browser_workers):
                    self.watchdog.sweep_browser(worker_id)
            finally:
                self._before_output()
                flow_fixtures(self.session).close(self._say)
                self._stop_services()
                self.specs.remove_markers()
                record_paused(self.config, self.live.finish())
                self._show_status(final=True)

    def _run(self, others: list[pytest.Item]) -> None:
        to_run: list[str] = []
        for item in self.items:
            state = self.states[item.nodeid]
            done = state.run.previous.get(item.flow.slug)
            if done is not None:
                self.announcer.resumed(state, done)
                continue
            reason = skip_reason(item)
            if reason is not None:
                self.announcer.skip(state, reason)
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
            to_run,
            history.durations(self.config, to_run),
            first=history.failed_last_time(self.config, to_run),
        )
        exclusive = [key for key in to_run if self.states[key].flow.exclusive]
        self.scheduler = self.scheduling(to_run, self.workers, retries, exclusive, self.retry_delay)
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
        after = flow_fixtures(self.session).after_tests(self.items)
        for other, nextitem in zip(others, [*others[1:], after], strict=False):
            self._before_output()
            self.hook.pytest_runtest_protocol(item=other, nextitem=nextitem)
            self._check_stop()
            self._pump(block=False)
        self._syncer = JournalSyncer([run.directory for run in self.runs.values()], self._on_synced)
        while to_run and not self.scheduler.done():
            self._pump(block=True)
        self._stop_syncer()
        self.announcer.announce()

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
                start_services(run, self.run_id, self._leaser, run_containment(self.config))
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
        record_service_failure(run, problem)
        assert run.service_error is not None
        keys = [key for key, state in self.states.items() if state.run is run]
        now = time.monotonic()
        for slot, task in self.scheduler.running.items():
            if task.key in keys:
                watch = self.states[task.key].watch
                assert watch is not None
                self.pool.send(slot, "cancel", watch.cancel(now, run.service_error, "error"))
        for task in self.scheduler.drop(keys):
            self._end_unstarted(
                task, run.service_error, stderr_tail=run.service_tail, tail_source=run.service_log
            )

    def _stop_services(self) -> None:
        for run in self.runs.values():
            stop_services(run)

    # -- the loop --------------------------------------------------------------------------
    def _pump(self, block: bool) -> None:
        # One critical section: an interrupt waits for the end of the bookkeeping it would
        # otherwise tear (an event taken off the queue but not recorded, say).
        with self.gate.critical():
            self._apply_live_control()
            self._dispatch()
            self._show_status()
            timeout = self.watchdog.next_wakeup(INTERRUPT_LATENCY_S) if block else 0.0
            try:
                event = self.pool.events.get(timeout=timeout)
            except queue.Empty:
                event = None
            # Every event already queued is handled before pytest hears of any: their flows'
            # journal lines then share one fsync (a group commit).
            self.announcer.group_commit = True
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
                self.announcer.group_commit = False
                if self._syncer is not None:
                    self._syncer.request(self.announcer.journaled)
                else:
                    self.announcer.announce()
            self.watchdog.check_global_timeout()
            self._check_services()
            self.live.forgive_own_stall()
            self.watchdog.check_backstops()
            self._check_stop()
            self._show_status()

    # -- live status and control ----------------------------------------------------------
    def _show_status(self, final: bool = False, force: bool = False) -> None:
        # Finished entries are in their runs: a term per run-set on each pass, not per flow.
        done = sum(len(run.entries) for run in self.runs.values())
        running = [self.states[task.key] for task in self.scheduler.running.values()]
        counts = running_counts(running, self.scheduler.pending_count, done, len(self.states))
        self.live.publish(self.run_id, counts, running, final=final, force=force)
        if self.status is not None and not final:
            self.status.show(counts)

    def _apply_live_control(self) -> None:
        stop = self.live.apply()
        if stop == "now":
            raise KeyboardInterrupt
        if stop == "drain" and not self.scheduler.stopped:
            self.drained = True
            self.scheduler.stop()

    def _before_output(self) -> None:
        """Erase the live status: a hook (pytest's terminal, any plugin) may print next."""
        if self.status is not None:
            self.status.hide()

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
        if self.live.paused or self.announcer.failure_pending():
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
            if not flow_fixtures(self.session).setup(state, slot, task.attempt, self._attempt_done):
                continue
            try:
                spec = self.specs.build(state, slot, task.attempt)
            except CANNOT_START as exc:
                self._attempt_done(state, slot, local_result(task.attempt, "error", str(exc)))
                continue
            if not self.pool.send(slot, "run", spec):
                self._attempt_done(state, slot, local_result(task.attempt, "error", UNREACHABLE))
                continue
            self.announcer.dispatched(state)

    def _lease_wait_limit(self, key: str) -> float:
        # A flow waits for its leases at most as long as it may run.
        return self.timeout_override or self.states[key].flow.timeout_s

    # -- events ----------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if event.kind == "synced":
            self.announcer.announce(None if event.data["problem"] else int(event.data["upto"]))
            return
        self.watchdog.handle(event)

    def _end_unstarted(self, task: Task, message: str, **tail: str) -> None:
        """A flow that ends as ``error`` before any worker ran this attempt."""
        state = self.states[task.key]
        state.attempts.append(unstarted_result(task.attempt, message, **tail))
        self._finalize(state)

    @property
    def interrupted(self) -> bool:
        return self.watchdog.stopping

    @interrupted.setter
    def interrupted(self, value: bool) -> None:
        # An interrupted run replaces no lost gateway.
        self.watchdog.stopping = value

    @property
    def no_usable_gateway(self) -> bool:
        return self.watchdog.no_usable_gateway(self.workers)

    @property
    def last_spawn_error(self) -> str:
        return self.watchdog.last_spawn_error

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    # -- results ---------------------------------------------------------------------------
    def _lock_dir(self) -> Path:
        return self._leaser().lock_dir

    def _attempt_done(self, state: FlowState, slot: int, result: AttemptResult) -> None:
        result = record_attempt(state, result, self._lock_dir)
        status = str(result["status"])
        # A flow whose service died is not retried against the dead service.
        ended = "aborted" if state.run.service_error else status
        retry = self.scheduler.finished(slot, ended, time.monotonic())
        if retry is None:
            self._finalize(state)

    def _finalize(self, state: FlowState) -> None:
        self.announcer.finalize(state)

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
            self.announcer.announce()
            while self.scheduler.running and time.monotonic() < deadline:
                try:
                    event = self.pool.events.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                # Dispatch is stopped, so this only records results and lost workers.
                self._handle(event)
            for slot, task in list(self.scheduler.running.items()):
                self.watchdog.abandon(slot, task, "interrupted", "interrupted")

    def _not_run_reason(self) -> str:
        """Why the flows that never started did not (journaled as ``not_run``)."""
        return not_run_reason(self.supervision, self.watchdog, self.scheduler, self.drained)

    def left_without_workers(self) -> str | None:
        """Why flows were left ``not_run`` for want of a worker, or ``None``."""
        return left_without_workers(
            self.supervision, self.watchdog, self.scheduler, self.drained, self.states.values()
        )

    def write_reports(self) -> None:
        """One ``report.json`` per run-set; a second Ctrl-C cannot cut this short."""
        self._before_output()
        with sigint_ignored():
            self._write_reports()

    def _write_reports(self) -> None:
        self.announcer.finish_unstarted(self.states.values(), self._not_run_reason())
        refused = write_run_reports(
            self.config, self.runs.values(), self.started_at, self.workers, self.interrupted
        )
        self.storage_error = self.storage_error or refused

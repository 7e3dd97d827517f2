"""Telling pytest (and the user) about flows that ended, never before the journal has them.

The durability contract: a flow's line is written to its run's journal first; only once that
line is durable (fsynced, alone or with the lines of flows that ended together) does
``pytest_runset_flow_finished`` fire and pytest's reporting hooks hear of the flow. A crash at
any moment therefore loses no flow that a user or a plugin has already seen. Everything here
runs on pytest's main thread.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from pytest_runset.engine.entries import flow_entry, unstarted_entry
from pytest_runset.engine.lifecycle import conclude
from pytest_runset.engine.state import FlowState, RunsetRun
from pytest_runset.gateway.protocol import AttemptResult
from pytest_runset.results.formats import FlowEntry, FlowStatus, JournalLine
from pytest_runset.results.statuses import FAILING_STATUSES
from pytest_runset.session.collect import RunsetItem
from pytest_runset.session.consumers import serial_results
from pytest_runset.session.replay import Replay, through_protocol
from pytest_runset.session.teststatus import Verdict, telling


@dataclass(frozen=True)
class _Unannounced:
    """A flow journaled (not yet durable) that pytest has not heard of yet."""

    number: int
    state: FlowState
    status: FlowStatus
    last: AttemptResult
    xfail_reason: str


class FlowAnnouncer:
    """Journals finished flows and replays them into pytest once their lines are durable."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        runs: dict[str, RunsetRun],
        items: dict[str, RunsetItem],
        fail_on_flaky: bool,
        started_at: float,
        before_output: Callable[[], None],
    ) -> None:
        self.config = config
        self.hook = config.hook
        self.runs = runs
        self.items = items
        self.fail_on_flaky = fail_on_flaky
        self.started_at = started_at
        # Erases the live status line: a hook (pytest's terminal, any plugin) may print next.
        self.before_output = before_output
        self.replay = Replay(config)
        self.serial = serial_results(config)
        self.pending: list[_Unannounced] = []
        # How many flow lines were journaled so far: the syncer reports progress in these.
        self.journaled = 0
        # While set, flows that end are journaled but told only after one shared fsync.
        self.group_commit = False
        # Set once a storage error stopped the run: the journal takes no more lines, and the
        # flows that end while running ones are stopped are told without waiting for it.
        self.storage_stopped = False

    def failure_pending(self) -> bool:
        """Whether a failure waits to be reported (which may stop dispatch: -x, --maxfail)."""
        return any(flow.status in FAILING_STATUSES for flow in self.pending)

    def dispatched(self, state: FlowState) -> None:
        """A flow went to a worker: pytest hears that it started (once, whatever its retries).

        Not when results are consumed serially (PyCharm): there the flow's start is told with
        its result, back to back (see :meth:`announce`), and the live status line is what
        shows it running.
        """
        if self.serial or state.logstarted:
            return
        state.logstarted = True
        self.before_output()
        self.replay.logstart(self.items[state.item.nodeid])

    def finalize(self, state: FlowState) -> None:
        """The flow's last attempt is in: decide its status, journal it, tell pytest (now,
        or after the group's fsync)."""
        outcome = conclude(state, fail_on_flaky=self.fail_on_flaky, session_started=self.started_at)
        entry = outcome.entry
        state.run.entries[state.flow.slug] = entry
        state.entry = entry
        try:
            self._journal(state.run, {"event": "flow", **entry}, sync=False)
        finally:
            # Pending even when its line failed (StorageError): told once the run is stopped.
            self.journaled += 1
            self.pending.append(
                _Unannounced(
                    self.journaled, state, outcome.status, outcome.last, outcome.xfail_reason
                )
            )
        if not self.group_commit:
            self.announce()

    def announce(self, durable: int | None = None) -> None:
        """Tell pytest about the flows that ended, once their journal lines are durable.

        ``durable`` is how far the syncer's thread made the journal durable; without it, the
        journal is synced here first and every pending flow is told.
        """
        if not self.pending:
            return
        if durable is None:
            if not self.storage_stopped:
                for run in self.runs.values():
                    run.directory.sync(force=True)
            durable = self.journaled
        told = [flow for flow in self.pending if flow.number <= durable]
        self.pending = self.pending[len(told) :]
        for flow in told:
            state = flow.state
            entry = state.entry
            assert entry is not None
            item = self.items[state.item.nodeid]
            self._flow_finished(entry)
            if not state.logstarted:
                state.logstarted = True
                self.replay.logstart(item)
            deliver = functools.partial(
                self.replay.finished,
                item,
                status=flow.status,
                entry=entry,
                last=flow.last,
                xfail_reason=flow.xfail_reason,
                worker_id=state.worker_id,
                run_dir=state.run.run_dir,
            )
            with telling(self.config, item.nodeid, _verdict(entry)):
                through_protocol(item, deliver)

    def resumed(self, state: FlowState, entry: FlowEntry) -> None:
        """A flow an earlier session of this run finished: reported again, never re-run."""
        state.entry = entry
        state.run.entries[state.flow.slug] = entry
        item = self.items[state.item.nodeid]
        self._flow_finished(entry)
        with telling(self.config, item.nodeid, _verdict(entry)):
            through_protocol(
                item, functools.partial(self.replay.resumed, item, entry, run_dir=state.run.run_dir)
            )

    def skip(self, state: FlowState, reason: str) -> None:
        """A flow skipped by a mark: journaled (durably) and reported as pytest's skip."""
        entry = unstarted_entry(state.flow, state.item.nodeid, "skipped", reason)
        state.entry = entry
        self._journal(state.run, {"event": "flow", **entry}, sync=True)
        state.run.entries[state.flow.slug] = entry
        item = self.items[state.item.nodeid]
        self._flow_finished(entry)
        through_protocol(
            item,
            functools.partial(
                self.replay.skipped, item, reason, entry=entry, run_dir=state.run.run_dir
            ),
        )

    def finish_unstarted(self, states: Iterable[FlowState], reason: str) -> None:
        """Flows that never got to run: ``not_run`` (journaled, not reported to pytest); a
        flow stopped between attempts: ``interrupted``."""
        for state in states:
            if state.entry is not None or state.flow.slug in state.run.entries:
                continue
            if state.attempts:
                entry = flow_entry(state, "interrupted", "interrupted", False, self.started_at)
            else:
                entry = unstarted_entry(state.flow, state.item.nodeid, "not_run", reason)
            state.entry = entry
            with contextlib.suppress(Exception):
                state.run.directory.journal({"event": "flow", **entry})
            state.run.entries[state.flow.slug] = entry

    def _journal(self, run: RunsetRun, line: JournalLine, *, sync: bool) -> None:
        """Journal a line; raises StorageError, unless a storage error already stopped the run
        (then the journal, which remembers its failure, is not asked again)."""
        if self.storage_stopped:
            return
        run.directory.journal(line, sync=sync)

    def _flow_finished(self, entry: FlowEntry) -> None:
        self.before_output()
        self.hook.pytest_runset_flow_finished(config=self.config, result=entry)


def _verdict(entry: FlowEntry) -> Verdict:
    """What ``-v`` says of the flow (``TIMEOUT``, ``FLAKY``), from its journaled entry."""
    return Verdict(str(entry["status"]), bool(entry.get("flaky", False)))

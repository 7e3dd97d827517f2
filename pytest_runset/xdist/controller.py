"""The pytest-xdist controller's side of a run: run directories, services, journal, report.

Under ``pytest -n N`` with pytest-xdist, flows run inside xdist's workers (see
:mod:`pytest_runset.xdist.worker`). The controller collects nothing, so it loads the run-set
files named on the command line itself, opens one run directory per run-set, starts the
run-sets' services before any worker starts, and hands run id, run directories and service ports
to the workers through ``workerinput``. Each finished flow comes back as the plain-data report
entry a worker attached to its teardown report; the controller journals it, calls the flow hook,
and at the end writes the one ``report.json`` per run-set, exactly as the run loop would.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, TypedDict

import pytest

from pytest_runset.engine.entries import unstarted_entry
from pytest_runset.engine.interrupts import deferred_interrupts, sigint_ignored
from pytest_runset.engine.state import RunsetRun
from pytest_runset.engine.supervision import (
    SERVICE_FAILED_NAME,
    crashed_message,
    global_timeout_message,
)
from pytest_runset.model.flows import RunSet, RunsetError
from pytest_runset.resources.leases import LeaseError, Leaser, lock_directory
from pytest_runset.resources.services import ServiceError
from pytest_runset.results.formats import FlowEntry
from pytest_runset.results.jsonfile import write_json_atomic
from pytest_runset.results.report import JOURNAL_NAME
from pytest_runset.results.storage import StorageError
from pytest_runset.session.collect import get_runset
from pytest_runset.session.containment import (
    record_paused,
    run_containment,
    start_containment,
)
from pytest_runset.session.hangup import silence_dead_terminal
from pytest_runset.session.live_control import RunControl, xdist_status
from pytest_runset.session.repeat import repeated
from pytest_runset.session.runs import (
    journal_start,
    open_runs,
    record_service_failure,
    start_services,
    stop_services,
    storage_stop_line,
    write_run_reports,
)
from pytest_runset.session.settings import EXPLICIT, is_runset_path
from pytest_runset.xdist.items import FlowItems

# The attribute of a flow's teardown report that carries its :class:`EntryPayload` (JSON).
ENTRY_ATTRIBUTE = "runset_entry"
SERVICE_WATCH_INTERVAL_S = 0.25


class EntryPayload(TypedDict):
    """What an xdist worker tells the controller of a finished flow, on its teardown report."""

    runset: str  # the run-set file's resolved path: the key of its run
    entry: FlowEntry  # the flow's report entry
    resumed: bool  # finished by an earlier session of this run: not journaled again
    # Stopped (or never started) by the run's global timeout: the session then fails.
    ended_by_global_timeout: bool


WORKERINPUT_KEY = "runset_runs"


class RunInput(TypedDict):
    """What an xdist worker gets of one run (``workerinput[WORKERINPUT_KEY][run-set path]``)."""

    output_root: str
    run_name: str  # the run directory's name
    started_at: float
    base_url: str | None
    # Flows an earlier session of this run finished: reported again, not run.
    previous: dict[str, FlowEntry]
    global_timeout: float | None
    global_deadline: float | None  # Unix time
    service_values: dict[str, str]
    service_error: str | None
    service_tail: str
    service_log: str
    containment_group: str
    cookie_file: str | None


class XdistRun:
    """Everything the xdist controller keeps for the run-sets of this session."""

    def __init__(
        self,
        config: pytest.Config,
        runsets: dict[str, RunSet],
        run_id: str,
        resume: str | None = None,
    ) -> None:
        self.config = config
        self.resume = resume
        self.runsets = runsets
        self.run_id = run_id
        self.runs: dict[str, RunsetRun] = {}
        self.started_at = time.time()
        self.leaser: Leaser | None = None
        # The flows after pytest_runset_modify_flows, by slug and node id, as the workers
        # collect them (a project's or pytest-repeat's copy included).
        self.items = FlowItems(config.rootpath)
        self.started: dict[str, str] = {}
        self.live: RunControl | None = None
        self.signals: dict[int, Any] = {}
        # The run's containment, handed to xdist's workers for their attempts.
        self.containment_group = ""
        self.cookie_file: str | None = None
        self._stop_sent = False
        self.workers = 1
        self.global_timeout: float | None = None
        # Whether the run's global timeout ended (or kept from starting) any flow.
        self.global_expired = False
        self._watch_stop = threading.Event()
        # The storage error that stopped the session, if one did.
        self.storage_error: StorageError | None = None
        self._watch: threading.Thread | None = None

    # -- session start ---------------------------------------------------------------------
    def open(self) -> None:
        """Open the run directories and start the services (usage errors as one line)."""
        # SIGTERM and SIGHUP (terminal closed) end the run as Ctrl-C does, report included:
        # pytest-xdist turns a KeyboardInterrupt into stopping its workers.
        handlers = {
            signal.SIGTERM: _as_keyboard_interrupt,
            signal.SIGHUP: self._on_hangup,
            signal.SIGTSTP: self._on_tstp,
            signal.SIGCONT: self._on_cont,
        }
        for signum, handler in handlers.items():
            with contextlib.suppress(ValueError):
                self.signals[signum] = signal.signal(signum, handler)
        with deferred_interrupts():
            open_runs(self.config, self.runsets, self.run_id, self.resume, self.runs)
            containment = start_containment(
                self.config,
                self.run_id,
                list(self.runsets.values()),
                [run.directory.path for run in self.runs.values()],
            )
            self.containment_group = containment.key
            self.cookie_file = containment.cookie_file
            for run in self.runs.values():
                try:
                    if run.started_at is None:
                        journal_start(run, self.started_at)
                    else:
                        run.directory.journal({"event": "resume", "at": time.time()})
                except StorageError as exc:
                    self._storage_stop(exc)
                run.started_at = run.started_at or self.started_at
                run.order.update({flow.slug: (flow.index, flow.slug) for flow in run.runset.flows})
        for key, run in self.runs.items():
            flows = list(run.runset.flows)
            replaced = self.config.hook.pytest_runset_modify_flows(config=self.config, flows=flows)
            if replaced is not None:
                flows = list(replaced)
            # The same items as the workers collect (pytest-repeat's --count included).
            for flow, name in repeated(self.config, flows):
                self.items.add(key, flow, name)
                run.order.setdefault(flow.slug, (flow.index, flow.slug))
        for run in self.runs.values():
            try:
                start_services(run, self.run_id, self._leaser, run_containment(self.config))
            except ServiceError as exc:
                if exc.cancelled:
                    raise KeyboardInterrupt from None
                record_service_failure(run, exc)
        # Dead services, and the run's pauses (its xdist workers freeze their own flows).
        self.live = RunControl([run.directory.path for run in self.runs.values()], self.run_id)
        self._watch = threading.Thread(
            target=self._watch_services, name="runset-service-watch", daemon=True
        )
        self._watch.start()

    def _on_hangup(self, signum: int, frame: object) -> None:
        silence_dead_terminal(self.config)
        raise KeyboardInterrupt

    def _on_tstp(self, signum: int, frame: object) -> None:
        """Ctrl-Z: counted as a pause (the xdist workers freeze their flows), then stop."""
        if self.live is not None:
            self.live.pause_from_signal(True)
            self.live.poll()
        os.kill(os.getpid(), signal.SIGSTOP)

    def _on_cont(self, signum: int, frame: object) -> None:
        if self.live is not None:
            self.live.pause_from_signal(False)

    def _watch_services(self) -> None:
        """Notice a service that dies while xdist's workers run flows (no pytest hooks here)."""
        while not self._watch_stop.wait(SERVICE_WATCH_INTERVAL_S):
            if self.live is not None:
                self.live.poll()
                with contextlib.suppress(Exception):
                    # Status reads only: a pause shows in `pytest-runset status` at once.
                    self._publish_status()
                if self.live.stop == "now" and not self._stop_sent:
                    # `pytest-runset stop`: as Ctrl-C, which pytest-xdist handles on the
                    # main thread (stops its workers, and this plugin writes the report).
                    self._stop_sent = True
                    os.kill(os.getpid(), signal.SIGINT)
            for run in self.runs.values():
                if run.services is None or run.service_error is not None:
                    continue
                problem = run.services.check_alive()
                if problem is None:
                    continue
                record_service_failure(run, problem)
                with contextlib.suppress(OSError):
                    write_json_atomic(
                        run.directory.path / SERVICE_FAILED_NAME,
                        {
                            "message": run.service_error,
                            "tail": run.service_tail,
                            "log": run.service_log,
                        },
                    )

    def _leaser(self) -> Leaser:
        if self.leaser is None:
            try:
                self.leaser = Leaser(lock_directory())
            except LeaseError as exc:
                raise pytest.UsageError(str(exc)) from None
        return self.leaser

    def workerinput(self) -> dict[str, RunInput]:
        """What every xdist worker needs to run flows into this run (plain data only)."""
        return {
            key: {
                "output_root": str(run.directory.output_root),
                "run_name": run.directory.run_id,
                "started_at": run.started_at or self.started_at,
                "base_url": run.base_url,
                # Flows an earlier session of this run finished: reported again, not run.
                "previous": dict(run.previous),
                "global_timeout": self.global_timeout,
                "global_deadline": (
                    self.started_at + self.global_timeout
                    if self.global_timeout is not None
                    else None
                ),
                "service_values": dict(run.service_values),
                "service_error": run.service_error,
                "service_tail": run.service_tail,
                "service_log": run.service_log,
                "containment_group": self.containment_group,
                "cookie_file": self.cookie_file,
            }
            for key, run in self.runs.items()
        }

    # -- while xdist runs ------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.node_collected(list(ids))

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if self.items.key(nodeid) is not None:
            self.started[nodeid] = ""
            self._publish_status()

    def _publish_status(self, final: bool = False) -> None:
        """``status.json`` for ``pytest-runset status`` (pause and stop are refused here)."""
        if self.live is None:
            self.live = RunControl([run.directory.path for run in self.runs.values()], self.run_id)
        done = {(key, slug) for key, run in self.runs.items() for slug in run.entries}
        flows = self.items.flows
        running = [
            flows[key][0].name
            for key in map(self.items.key, self.started)
            if key is not None and key not in done
        ]
        status = xdist_status(self.run_id, self.live, running, len(done), len(flows), final)
        self.live.write_status(status, force=final)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.logreport(report)

    def node_collected(self, ids: list[str]) -> None:
        """The flows the workers collected (after -k/-m): each must end with an entry."""
        self.items.collect(ids)

    def logreport(self, report: pytest.TestReport) -> None:
        raw = getattr(report, ENTRY_ATTRIBUTE, None)
        if isinstance(raw, str):
            # Written by our own xdist worker (attach_entry), carried by xdist's report transport.
            data: EntryPayload = json.loads(raw)
            if data.get("ended_by_global_timeout"):
                self.global_expired = True
            self._record(str(data["runset"]), data["entry"].copy(), bool(data.get("resumed")))
            return
        if str(report.when) == "???" and report.failed:
            # pytest-xdist's report for a worker that died while running the flow.
            key = self.items.key(report.nodeid)
            if key is not None and key[1] not in self.runs[key[0]].entries:
                node = getattr(report, "node", None)
                worker = str(getattr(getattr(node, "gateway", None), "id", "") or "")
                flow, nodeid = self.items.flows[key]
                entry = unstarted_entry(
                    flow,
                    nodeid or report.nodeid,
                    "error",
                    crashed_message(worker),
                )
                entry["worker"] = worker
                self._record(key[0], entry)

    def _record(self, run_key: str, entry: FlowEntry, resumed: bool = False) -> None:
        run = self.runs.get(run_key)
        if run is None:
            return
        run.entries[str(entry["slug"])] = entry
        if not resumed:
            # Durable first, as in the run loop: once a hook hears of it, the journal has it.
            try:
                run.directory.journal({"event": "flow", **entry})
            except StorageError as exc:
                self._storage_stop(exc)
                return
        self.config.hook.pytest_runset_flow_finished(config=self.config, result=entry)
        self._publish_status()

    def _storage_stop(self, error: StorageError) -> None:
        """The disk refused the run's own files: end the session as an interrupt (xdist stops
        its workers and their flows), with one line naming the file; once only."""
        if self.storage_error is not None:
            return
        self.storage_error = error
        raise pytest.Session.Interrupted(storage_stop_line(error, self.run_id))

    # -- session end -----------------------------------------------------------------------
    def finish(self, *, interrupted: bool, stopped: bool) -> str | None:
        """Stop services, account for unfinished flows, write the reports; close the runs.

        Returns the line to end the session with when the disk refused a report and no
        storage error stopped the session before (see :meth:`_storage_stop`).
        """
        refused: StorageError | None = None
        with sigint_ignored():
            try:
                self._watch_stop.set()
                if self._watch is not None:
                    self._watch.join()
                for run in self.runs.values():
                    stop_services(run)
                if self.live is not None:
                    self.live.set_paused(False)
                    record_paused(self.config, self.live.total_paused_s())
                self._finish_unstarted(interrupted=interrupted, stopped=stopped)
                collected = self.items.collected
                total = len(collected) if collected is not None else 0
                workers = max(1, min(self.workers, total)) if total else max(1, self.workers)
                refused = write_run_reports(
                    self.config,
                    [run for key, run in self.runs.items() if self._has_flows(key)],
                    self.started_at,
                    workers,
                    interrupted,
                )
            finally:
                for signum, handler in self.signals.items():
                    with contextlib.suppress(ValueError, TypeError):
                        signal.signal(signum, handler)
                with contextlib.suppress(OSError):
                    self._publish_status(final=True)
                for key, run in self.runs.items():
                    run.directory.close()
                    if self.resume is None and not self._has_flows(key):
                        # No flow of this run-set was selected (or collected): like the run
                        # loop, leave no run behind.
                        with contextlib.suppress(OSError):
                            shutil.rmtree(run.directory.path)
        if refused is None or self.storage_error is not None:
            return None
        self.storage_error = refused
        return storage_stop_line(refused, self.run_id)

    def _has_flows(self, key: str) -> bool:
        collected = self.items.collected or []
        return any(run_key == key for run_key, _ in collected) or bool(self.runs[key].entries)

    def _finish_unstarted(self, *, interrupted: bool, stopped: bool) -> None:
        reason = "not run: run interrupted" if interrupted else "not run: dispatch stopped"
        if not interrupted and not stopped:
            reason = "not run: no xdist worker ran it"
        limit = self.global_timeout
        deadline_passed = (
            not interrupted and limit is not None and time.time() >= self.started_at + limit
        )
        if deadline_passed:
            assert limit is not None
            reason = global_timeout_message(limit, not_run=True)
        for key, slug in self.items.collected or []:
            run = self.runs[key]
            if slug in run.entries:
                continue
            flow, nodeid = self.items.flows[(key, slug)]
            if nodeid in self.started:
                entry = unstarted_entry(flow, nodeid, "interrupted", "interrupted")
            else:
                entry = unstarted_entry(flow, nodeid, "not_run", reason)
                # Flows the deadline kept from starting fail the run, as in the run loop.
                self.global_expired = self.global_expired or deadline_passed
            run.entries[slug] = entry
            with contextlib.suppress(Exception):
                run.directory.journal({"event": "flow", **entry})


def _as_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def xdist_worker_count(config: pytest.Config) -> int:
    """How many xdist workers this session starts (``-n N`` or ``--tx`` specs)."""
    count = 0
    for spec in config.getoption("tx", None) or []:
        head, star, _ = str(spec).partition("*")
        count += int(head) if star and head.isdigit() else 1
    return max(1, count)


def controller_runsets(config: pytest.Config) -> dict[str, RunSet]:
    """The run-sets this session's flows come from, as the workers will collect them.

    ``--runset`` files, positional run-set files, and run-set files found below positional
    directories (skipping ``norecursedirs`` and virtualenvs, as pytest's collection does).
    """
    explicit = config.stash.get(EXPLICIT, set())
    found: list[Path] = []
    for arg in config.args:
        path = Path(arg.split("::")[0])
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        if path.is_file():
            if path.resolve() in explicit or is_runset_path(path):
                found.append(path)
        elif path.is_dir():
            found.extend(_runset_files_below(config, path))
    runsets: dict[str, RunSet] = {}
    for path in found:
        try:
            runset = get_runset(config, path)
        except RunsetError:
            continue  # its collection error, in the workers (a --runset one was refused)
        runsets.setdefault(str(runset.path), runset)
    return runsets


def _runset_files_below(config: pytest.Config, top: Path) -> list[Path]:
    patterns = [str(p) for p in config.getini("norecursedirs")]
    found: list[Path] = []
    for current, dirs, files in os.walk(top):
        dirs[:] = sorted(
            name
            for name in dirs
            if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
            and not (Path(current) / name / "pyvenv.cfg").exists()
            # A run directory holds copies of run-sets (workspaces), never run-sets to run.
            and not (Path(current) / name / JOURNAL_NAME).exists()
        )
        found.extend(Path(current) / name for name in sorted(files) if is_runset_path(Path(name)))
    return found

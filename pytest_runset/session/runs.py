"""A run-set's run as a whole: its services and its final report.

Shared by the run loop (own pool) and the pytest-xdist controller, so that both start services
the same way and write the same ``report.json``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from pytest_runset.engine.browser_spec import remove_auth_dir
from pytest_runset.engine.state import RunsetRun
from pytest_runset.model.flows import RunSet
from pytest_runset.model.placeholders import PlaceholderError, substitute
from pytest_runset.model.slugs import slugify
from pytest_runset.resources.leases import Leaser
from pytest_runset.resources.services import ServiceError, Services
from pytest_runset.results.report import (
    RunDirectory,
    RunDirError,
    build_report,
    iso_utc,
    point_latest,
)
from pytest_runset.results.storage import StorageError
from pytest_runset.session.containment import RunContainment, containment_fields
from pytest_runset.session.coordination import QUEUE_INFO
from pytest_runset.session.resume import notice_unfinished, resumed_run
from pytest_runset.session.settings import output_root
from pytest_runset.session.shards import SHARD_INFO


def open_runs(
    config: pytest.Config,
    runsets: dict[str, RunSet],
    run_id: str,
    resume: str | None,
    runs: dict[str, RunsetRun],
) -> None:
    """Open (or reopen) one run directory per run-set into ``runs``; usage errors on failure.

    ``runs`` is filled as directories open, so that a caller that is interrupted half-way
    still closes (and reports) those already open.
    """
    used: set[Path] = set()
    try:
        for key, runset in runsets.items():
            root = output_root(config, runset)
            name = run_id
            if (root / name) in used:
                name = f"{run_id}-{slugify(runset.name)}"
            used.add(root / name)
            directory = RunDirectory(root, name)
            directory.open(resume=resume is not None)
            # From the moment the run starts: `tail -f latest/*/stdout.log`, `status latest`.
            with contextlib.suppress(OSError):
                point_latest(root, name)
            base_url = config.option.runset_base_url or runset.settings.base_url
            if resume is not None:
                runs[key] = resumed_run(config, runset, directory, base_url)
            else:
                runs[key] = RunsetRun(runset, directory, base_url)
                notice_unfinished(config, root, exclude=name)
    except RunDirError as exc:
        raise pytest.UsageError(str(exc)) from None


def journal_start(run: RunsetRun, started_at: float) -> None:
    """The journal's first line of a run: what a later --runset-resume checks against."""
    run.directory.journal(
        {
            "event": "start",
            "run_id": run.directory.run_id,
            "started_at": started_at,
            "runset": {"name": run.runset.name, "sha256": run.runset.sha256},
        }
    )


def start_services(
    run: RunsetRun,
    run_id: str,
    leaser: Callable[[], Leaser],
    containment: RunContainment | None = None,
) -> None:
    """Start the run's services (if any) before its first flow.

    Raises :class:`ServiceError` when one cannot start (``cancelled`` when interrupted);
    on success ``run.service_values`` holds the ``{services.<name>.port}`` values.
    """
    specs = run.runset.settings.services
    if not specs:
        return
    base_env = {**os.environ, **service_runset_env(run, run_id)}
    run.services = Services(
        specs,
        run_dir=run.directory.path,
        run_id=run.directory.run_id,
        base_dir=run.runset.directory,
        base_env=base_env,
        default_grace_s=run.runset.settings.kill_grace,
        lease_ports=functools.partial(_service_ports, run, leaser),
        # Each service in a group of its own under the session's run group (cgroup tier).
        containment=containment.tier if containment is not None else "process-group",
        group_run_id=containment.key if containment is not None else run_id,
        note_cookie=containment.note_cookie if containment is not None else lambda c: None,
    )
    run.services.start()
    run.service_values = run.services.placeholder_values()


def _service_ports(run: RunsetRun, leaser: Callable[[], Leaser], count: int) -> list[int]:
    before = len(run.service_lease.ports)
    if not leaser().take_ports(count, run.runset.settings.ports.range, run.service_lease):
        low, high = run.runset.settings.ports.range
        raise RuntimeError(f"no {count} free port(s) in {low}-{high}")
    return run.service_lease.ports[before:]


def stop_services(run: RunsetRun) -> None:
    if run.services is not None:
        run.services.stop()
    run.service_lease.release()


def record_service_failure(run: RunsetRun, problem: ServiceError) -> None:
    """A service of the run failed (at start or since): every flow of the run that has not
    ended becomes ``error`` with the service's one-line summary and its log's tail."""
    summary, _, tail = str(problem).partition("\n")
    run.service_error = summary
    run.service_tail = tail
    run.service_log = f"services/{problem.name}.log"


def service_runset_env(run: RunsetRun, run_id: str) -> dict[str, str]:
    """``[runset] env`` for services: filled with what is known before any flow starts.

    A value using a flow-only placeholder (``{slot}``, ``{services.x.port}``...) reaches the
    services as written.
    """
    values = {
        "run_id": run_id,
        "run_dir": str(run.directory.path),
        "python": sys.executable,
        "name": run.runset.name,
    }
    env: dict[str, str] = {}
    for key, value in run.runset.settings.env.items():
        try:
            env[key] = substitute(value, values, {**os.environ, **env})
        except PlaceholderError:
            env[key] = value
    return env


def write_run_report(
    config: pytest.Config,
    run: RunsetRun,
    *,
    session_started: float,
    workers: int,
    interrupted: bool,
    finished_at: float | None = None,
) -> StorageError | None:
    """``report.json`` of one run (flows in file order), ``latest``, and the report hook.

    Returns the :class:`StorageError` when the disk refused the report (nothing is left half
    written; the hook is not called, since there is no report): the caller stops the session
    with :func:`storage_stop_line`.
    """
    # The run's flows are over: its personas' sign-in states go (never kept past the run).
    remove_auth_dir(run.directory.path)
    finished = finished_at if finished_at is not None else time.time()
    flows = [run.entries[slug] for slug in sorted(run.entries, key=run.order.__getitem__)]
    report = build_report(
        run_id=run.directory.run_id,
        runset={
            "name": run.runset.name,
            "file": str(run.runset.path),
            "sha256": run.runset.sha256,
        },
        flows=flows,
        started_at=run.started_at or session_started,
        finished_at=finished,
        workers=workers,
        interrupted=interrupted,
        shard=config.stash.get(SHARD_INFO, None),
    )
    queue = config.stash.get(QUEUE_INFO, None)
    if queue is not None:
        report["queue"] = queue
    fields = containment_fields(config)
    report["containment"] = fields["containment"]
    report["limits_enforced"] = fields["limits_enforced"]
    report["paused_s"] = fields["paused_s"]
    try:
        run.report_path = str(run.directory.write_report(report))
    except StorageError as exc:
        return exc
    run.report = report
    # The report is the run's record; a journal that failed earlier takes no more lines.
    with contextlib.suppress(StorageError):
        run.directory.journal({"event": "report", "finished_at": iso_utc(finished)})
    config.hook.pytest_runset_report(config=config, report=report)
    return None


def write_run_reports(
    config: pytest.Config,
    runs: Iterable[RunsetRun],
    session_started: float,
    workers: int,
    interrupted: bool,
) -> StorageError | None:
    """:func:`write_run_report` of each run, with one finish time; the first StorageError."""
    finished = time.time()
    refused: StorageError | None = None
    for run in runs:
        error = write_run_report(
            config,
            run,
            session_started=session_started,
            workers=workers,
            interrupted=interrupted,
            finished_at=finished,
        )
        refused = refused or error
    return refused


def storage_stop_line(error: StorageError, run_id: str) -> str:
    """The one line that says a storage error stopped the session, and how to go on.

    The run loop and the xdist controller both end the session with it (exit code 2, as an
    interrupt): flows still running were stopped, what the journal holds is intact.
    """
    if error.resumable:
        then = f"fix it and run again with --runset-resume {run_id}"
    else:
        then = "the run's journal is gone, so run the flows again"
    return f"runset: {error}; running flows stopped; {then}"

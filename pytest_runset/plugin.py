"""pytest entry point: configuration, collection hooks, the run loop hook and the summary."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_runset.model.loader import RunSet, RunsetError
from pytest_runset.session.collect import (
    EXPLICIT,
    LOAD_ERRORS,
    RunsetFile,
    RunsetItem,
    get_runset,
    is_runset_path,
)
from pytest_runset.session.options import timeout_value, workers_value, xdist_available

if TYPE_CHECKING:
    from pytest_runset.engine.state import RunsetRun
    from pytest_runset.session.runloop import FlowRunLoop

LOOP = pytest.StashKey["FlowRunLoop"]()
# The runs of this session, whoever ran them (the run loop or the xdist controller).
RUNS = pytest.StashKey["dict[str, RunsetRun]"]()
RUN_ID = pytest.StashKey[str]()
OWN_N = pytest.StashKey[bool]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_runset import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_runset.session.options import register

    register(parser, pluginmanager)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "runset: a flow of a pytest-runset run-set file")
    # Validate options early: a typo must cost nothing but a one-line message.
    if config.option.runset_workers is not None:
        workers_value(config.option.runset_workers, "--runset-workers")
    if config.stash.get(OWN_N, None) is None:
        config.stash[OWN_N] = not xdist_available(config.pluginmanager)
    if config.stash[OWN_N] and getattr(config.option, "numprocesses", None) is not None:
        workers_value(str(config.option.numprocesses), "-n")
    if config.option.runset_timeout is not None:
        timeout_value(config.option.runset_timeout)
    if config.option.runset_global_timeout is not None:
        timeout_value(config.option.runset_global_timeout, "--runset-global-timeout")
    resume = config.option.runset_resume
    if resume is not None:
        run_id = config.option.runset_run_id
        if run_id is not None and run_id != resume:
            raise pytest.UsageError(
                f"--runset-resume {resume} and --runset-run-id {run_id}: give one of them"
            )
        if resume != "last":
            from pytest_runset.results.report import RunDirError, check_run_id

            try:
                check_run_id(resume)
            except RunDirError as exc:
                message = str(exc).replace("--runset-run-id", "--runset-resume")
                raise pytest.UsageError(message) from None
    from pytest_runset.session.scaleout import check_options, warn_open_sockets

    check_options(config)
    warn_open_sockets(config)
    if not config.pluginmanager.has_plugin("runset-history"):
        from pytest_runset.session import history

        # Records durations from each run's report (its pytest_runset_report).
        config.pluginmanager.register(history, "runset-history")
    if config.option.runset_shard is not None:
        from pytest_runset.session.shards import ShardError, parse_shard

        try:
            parse_shard(config.option.runset_shard)
        except ShardError as exc:
            raise pytest.UsageError(str(exc)) from None
    _ini_number(config, "runset_max_restarts", int)
    _ini_number(config, "runset_backstop_margin", float)
    if xdist_controller_session(config):
        # Options of pytest-runset's own gateways (where this build has them): under xdist the
        # flows run in xdist's local workers, so these would be ignored; refuse them instead.
        for option in ("--runset-tx", "--runset-px", "--runset-remote-root"):
            if getattr(config.option, option[2:].replace("-", "_"), None):
                raise pytest.UsageError(
                    f"{option} and pytest-xdist's -n: give one of them (-n runs the flows in "
                    f"xdist's local workers, {option} on pytest-runset's own gateways)"
                )
    if config.option.runset_workers is not None and xdist_controller_session(config):
        # Under xdist the flows run in xdist's workers: its -n is their worker count.
        raise pytest.UsageError(
            f"--runset-workers {config.option.runset_workers} and pytest-xdist's "
            f"-n {config.option.numprocesses}: give one of them (-n runs the flows in xdist's "
            "workers, --runset-workers on pytest-runset's own)"
        )
    if config.option.runset_retries is not None and config.option.runset_retries < 0:
        raise pytest.UsageError("--runset-retries: must not be negative")
    if config.option.runset_run_id is not None:
        from pytest_runset.results.report import RunDirError, check_run_id

        try:
            check_run_id(config.option.runset_run_id)
        except RunDirError as exc:
            raise pytest.UsageError(str(exc)) from None

    explicit: set[Path] = set()
    paths: list[str] = []
    for raw in config.option.runset:
        path = Path(raw)
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        try:
            get_runset(config, path)
        except RunsetError as exc:
            raise pytest.UsageError(str(exc)) from None
        resolved = path.resolve()
        if resolved not in explicit:
            explicit.add(resolved)
            paths.append(str(resolved))
    config.stash[EXPLICIT] = explicit
    # pytest-xdist's side: the controller keeps the run, its workers run the flows.
    from pytest_runset.xdist import hooks as xdist_hooks

    if not config.pluginmanager.is_registered(xdist_hooks):
        config.pluginmanager.register(xdist_hooks, "runset-xdist")
    if paths:
        given = [Path(arg.split("::")[0]).resolve() for arg in config.args]
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args[:] = paths
        else:
            config.args.extend(p for p in paths if Path(p) not in given)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> RunsetFile | None:
    explicit = parent.config.stash.get(EXPLICIT, set())
    if is_runset_path(file_path) or file_path.resolve() in explicit:
        return RunsetFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    errors = session.config.stash.get(LOAD_ERRORS, [])
    if errors:
        raise pytest.UsageError(errors[0])


def xdist_controller_session(config: pytest.Config) -> bool:
    """Whether this process is the controller of a pytest-xdist session that distributes."""
    return not hasattr(config, "workerinput") and _xdist_distributing(config)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Last, so that -k, -m and --lf have chosen first: shards split what is selected.
    if config.option.runset_shard is not None:
        from pytest_runset.session.shards import select_shard

        select_shard(config, items)


def _xdist_distributing(config: pytest.Config) -> bool:
    if hasattr(config, "workerinput"):
        return True
    if config.stash.get(OWN_N, True):
        return False
    numprocesses = getattr(config.option, "numprocesses", None)
    dist = getattr(config.option, "dist", "no")
    return bool(numprocesses) and dist != "no"


def resolve_workers(config: pytest.Config, runsets: list[RunSet]) -> int:
    if config.option.runset_workers is not None:
        return workers_value(config.option.runset_workers, "--runset-workers")
    if config.stash.get(OWN_N, False) and config.option.numprocesses is not None:
        return workers_value(str(config.option.numprocesses), "-n")
    concurrency = [rs.settings.concurrency for rs in runsets if rs.settings.concurrency]
    return max(concurrency) if concurrency else 1


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    config = session.config
    if config.option.collectonly or _xdist_distributing(config):
        return None
    flows = [item for item in session.items if isinstance(item, RunsetItem)]
    if not flows:
        return None
    if session.testsfailed and not config.option.continue_on_collection_errors:
        raise session.Interrupted(
            f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
            "during collection"
        )
    from pytest_runset.engine.interrupts import deferred_interrupts
    from pytest_runset.session.resume import resolve_resume
    from pytest_runset.session.runloop import FlowRunLoop

    others = [item for item in session.items if not isinstance(item, RunsetItem)]
    runsets = {str(item.runset.path): item.runset for item in flows}
    resume = config.option.runset_resume
    if resume is not None:
        run_id = resolve_resume(config, resume, output_root(config, next(iter(runsets.values()))))
        config.stash[RUN_ID] = run_id
    run_id = session_run_id(config)
    timeout = config.option.runset_timeout
    global_timeout = config.option.runset_global_timeout
    from pytest_runset.session.scaleout import check_workers, resolve

    scaleout = resolve(config, list(runsets.values()))
    if scaleout is not None:
        check_workers(config, scaleout, config.stash.get(OWN_N, False))
    settings: dict[str, Any] = {
        "workers": (
            len(scaleout.gateways)
            if scaleout is not None
            else resolve_workers(config, list(runsets.values()))
        ),
        "scaleout": scaleout,
        "run_id": run_id,
        "timeout_override": timeout_value(timeout) if timeout is not None else None,
        "retries_override": config.option.runset_retries,
        "max_restarts": _ini_number(config, "runset_max_restarts", int),
        "backstop_margin": _ini_number(config, "runset_backstop_margin", float) or 0.0,
        "global_timeout": (
            timeout_value(global_timeout, "--runset-global-timeout")
            if global_timeout is not None
            else None
        ),
        "fail_on_flaky": config.option.runset_fail_on_flaky,
        "leaser": _leaser(flows),
    }
    runs: dict[str, RunsetRun] = {}
    loop: FlowRunLoop | None = None
    try:
        # From the first run directory on, an interrupt must still end in a written report.
        with deferred_interrupts():
            _open_runs(config, runsets, run_id, resume, runs)
            loop = FlowRunLoop(session, items=flows, runs=runs, **settings)
            config.stash[LOOP] = loop
            config.stash[RUNS] = runs
        loop.run(others)
    except KeyboardInterrupt:
        if loop is not None:
            loop.interrupted = True
        raise
    finally:
        try:
            if loop is not None:
                loop.write_reports()
        finally:
            for run in runs.values():
                run.directory.close()
    if session.testsfailed and config.option.maxfail and session.shouldfail:
        raise session.Failed(session.shouldfail)
    if loop.no_usable_gateway:
        reason = f"runset: no gateway can run flows ({loop.last_spawn_error})"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(reason, red=True, bold=True)
        raise session.Failed(reason)
    if loop.global_expired:
        # Unstarted flows are a failure of the run even when nothing that ran failed.
        raise session.Failed(f"the run's global timeout of {loop.global_timeout:g}s expired")
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A flow's results arrive here from the run loop (see ``replay.through_protocol``)."""
    if not isinstance(item, RunsetItem):
        return None
    from pytest_runset.session.replay import deliver_pending

    return deliver_pending(item)


def _leaser(flows: list[RunsetItem]) -> Any:
    """A leaser on the per-user lock directory, when some flow or service needs one."""
    from pytest_runset.resources.leases import LeaseError, Leaser, lock_directory
    from pytest_runset.resources.requirements import needs_leases

    needed = any(
        needs_leases(item.flow, item.runset) or item.flow.workspace != "none" for item in flows
    ) or any(item.runset.settings.services for item in flows)
    if not needed:
        return None
    try:
        return Leaser(lock_directory())
    except LeaseError as exc:
        raise pytest.UsageError(str(exc)) from None


def _open_runs(
    config: pytest.Config,
    runsets: dict[str, RunSet],
    run_id: str,
    resume: str | None,
    runs: dict[str, RunsetRun],
) -> None:
    """Open (or reopen) one run directory per run-set into ``runs``; usage errors on failure."""
    from pytest_runset.engine.state import RunsetRun
    from pytest_runset.results.report import RunDirectory, RunDirError
    from pytest_runset.session.resume import notice_unfinished, resumed_run

    used: set[Path] = set()
    try:
        for key, runset in runsets.items():
            root = output_root(config, runset)
            name = run_id
            if (root / name) in used:
                from pytest_runset.model.slugs import slugify

                name = f"{run_id}-{slugify(runset.name)}"
            used.add(root / name)
            directory = RunDirectory(root, name)
            directory.open(resume=resume is not None)
            base_url = config.option.runset_base_url or runset.settings.base_url
            if resume is not None:
                runs[key] = resumed_run(config, runset, directory, base_url)
            else:
                runs[key] = RunsetRun(runset, directory, base_url)
                notice_unfinished(config, root, exclude=name)
    except RunDirError as exc:
        raise pytest.UsageError(str(exc)) from None


def _ini_number(config: pytest.Config, name: str, kind: type[int] | type[float]) -> Any:
    raw = config.getini(name)
    if raw in (None, ""):
        return None
    try:
        value = kind(str(raw).strip())
    except ValueError:
        raise pytest.UsageError(f"ini option {name} = {raw!r}: expected a number") from None
    if value < 0 or not math.isfinite(value):
        raise pytest.UsageError(f"ini option {name} = {raw!r}: must not be negative")
    return value


def output_root(config: pytest.Config, runset: RunSet) -> Path:
    if config.option.runset_output:
        root = Path(config.option.runset_output)
        if not root.is_absolute():
            root = config.invocation_params.dir / root
        return root
    if runset.settings.output:
        return Path(runset.directory) / runset.settings.output
    return Path(runset.directory) / "runset-results"


def session_run_id(config: pytest.Config) -> str:
    """This session's run id: the option, the xdist controller's (on a worker), or a new one."""
    run_id = config.stash.get(RUN_ID, None)
    if run_id is None:
        workerinput = getattr(config, "workerinput", None)
        if workerinput and workerinput.get("runset_run_id"):
            run_id = str(workerinput["runset_run_id"])
        elif config.option.runset_run_id:
            run_id = str(config.option.runset_run_id)
        else:
            from pytest_runset.results.report import new_run_id

            run_id = new_run_id()
        config.stash[RUN_ID] = run_id
    return run_id


def pytest_unconfigure(config: pytest.Config) -> None:
    from pytest_runset.xdist.worker import shutdown

    shutdown(config)


def report_paths(config: pytest.Config) -> list[Path]:
    """The ``report.json`` files this session wrote (one per run-set), in collection order."""
    runs = config.stash.get(RUNS, None)
    if runs is None:
        return []
    return [Path(run.report_path) for run in runs.values() if run.report_path]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    runs = config.stash.get(RUNS, None)
    if runs is None:
        return
    from pytest_runset.results.report import STATUSES

    for run in runs.values():
        report = run.report
        if report is None:
            continue
        summary = report["summary"]
        parts = [
            f"{summary[status]} {status.replace('_', ' ')}"
            for status in STATUSES
            if summary.get(status)
        ]
        if summary.get("flaky"):
            parts.append(f"{summary['flaky']} flaky")
        shown = run.report_path or ""
        with contextlib.suppress(ValueError):
            shown = os.path.relpath(shown, config.invocation_params.dir)
        line = (
            f"runset {report['runset']['name']}: {', '.join(parts) or 'no flows'} "
            f"in {report['wall_s']:.2f}s on {report['workers']} worker"
            f"{'s' if report['workers'] != 1 else ''} "
            f"(efficiency {summary['parallelism_efficiency']:.0%}) -> {shown}"
        )
        bad = report["status"] not in ("passed",)
        for flow in report["flows"]:
            if flow.get("flaky"):
                terminalreporter.write_line(
                    f"flaky: {flow['nodeid']} passed on attempt {flow['attempts']}", yellow=True
                )
        terminalreporter.write_line(line, red=bad, green=not bad, bold=True)


def pytest_runset_report(config: pytest.Config, report: dict[str, Any]) -> None:
    """``--runset-html PATH``: a copy of the run's HTML page, its links relative to PATH."""
    if not config.option.runset_html:
        return
    from pytest_runset.results.html import write_html_copy

    write_html_copy(config, report, Path(config.option.runset_html))

"""What ``pytest_configure`` does for pytest-runset: check every option once, name the files.

A typo must cost nothing but a one-line message (exit 4), before anything starts. Heavy
modules (the run-set loader with pydantic, gateway specs with execnet) are imported only when
an option that needs them is given: a session without run-sets pays for none of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_runset.session import other_plugins
from pytest_runset.session.familiar_options import check_for_flows, map_browser_options
from pytest_runset.session.options import workers_value
from pytest_runset.session.settings import (
    EXPLICIT,
    LOADED,
    SETTINGS,
    own_n,
    resolve_settings,
    xdist_controller_session,
)

# Options of pytest-runset's own gateways, refused next to pytest-xdist's -n.
GATEWAY_OPTIONS = ("--runset-tx", "--runset-px", "--runset-remote-root")


def configure_session(config: pytest.Config) -> None:
    """Check the options, resolve the settings and add ``--runset`` files to the arguments."""
    option = config.option
    if option.runset_workers is not None:
        workers_value(option.runset_workers, "--runset-workers")
    if own_n(config) and getattr(option, "numprocesses", None) is not None:
        workers_value(str(option.numprocesses), "-n")
    _check_run_ids(config)
    if any(
        getattr(option, name, None)
        for name in ("runset_tx", "runset_px", "runset_remote_root", "runset_browser_endpoint")
    ):
        from pytest_runset.session.scaleout import check_options, warn_open_sockets

        check_options(config)
        warn_open_sockets(config)
    if option.runset_coordinator or option.runset_queue or os.environ.get("RUNSET_COORDINATOR"):
        from pytest_runset.session.coordination import check_options

        check_options(config)
    if option.runset_shard is not None:
        from pytest_runset.session.shards import ShardError, parse_shard

        try:
            parse_shard(option.runset_shard)
        except ShardError as exc:
            raise pytest.UsageError(str(exc)) from None
    # pytest-playwright's options, as pytest-runset's own (where those were not given).
    map_browser_options(config)
    config.stash[SETTINGS] = resolve_settings(config)
    if xdist_controller_session(config):
        _refuse_own_pool_options(config)
        from pytest_runset.session.coordination import refuse_under_xdist

        refuse_under_xdist(config)
    _add_explicit_files(config)
    other_plugins.register(config)
    if any(runset.flows for runset in config.stash.get(LOADED, {}).values()):
        # Options of other plugins that flows cannot honour: refused now that flows are sure.
        check_for_flows(config)


def _check_run_ids(config: pytest.Config) -> None:
    resume = config.option.runset_resume
    run_id = config.option.runset_run_id
    if resume is not None and run_id is not None and run_id != resume:
        raise pytest.UsageError(
            f"--runset-resume {resume} and --runset-run-id {run_id}: give one of them"
        )
    for name, value in (("--runset-resume", resume), ("--runset-run-id", run_id)):
        if value is None or (value == "last" and name == "--runset-resume"):
            continue
        from pytest_runset.results.report import RunDirError, check_run_id

        try:
            check_run_id(value)
        except RunDirError as exc:
            raise pytest.UsageError(str(exc).replace("--runset-run-id", name)) from None


def _refuse_own_pool_options(config: pytest.Config) -> None:
    """Under xdist the flows run in xdist's local workers: options of pytest-runset's own
    gateways would be ignored, so they are refused instead."""
    option = config.option
    for name in GATEWAY_OPTIONS:
        if getattr(option, name[2:].replace("-", "_"), None):
            raise pytest.UsageError(
                f"{name} and pytest-xdist's -n: give one of them (-n runs the flows in "
                f"xdist's local workers, {name} on pytest-runset's own gateways)"
            )
    if option.runset_workers is not None:
        raise pytest.UsageError(
            f"--runset-workers {option.runset_workers} and pytest-xdist's "
            f"-n {option.numprocesses}: give one of them (-n runs the flows in xdist's "
            "workers, --runset-workers on pytest-runset's own)"
        )


def _add_explicit_files(config: pytest.Config) -> None:
    """Load every ``--runset`` file now (a bad one is a usage error) and collect it."""
    explicit: set[Path] = set()
    paths: list[str] = []
    if config.option.runset:
        from pytest_runset.model.flows import RunsetError
        from pytest_runset.session.collect import get_runset

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
    if paths:
        given = [Path(arg.split("::")[0]).resolve() for arg in config.args]
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args[:] = paths
        else:
            config.args.extend(p for p in paths if Path(p) not in given)

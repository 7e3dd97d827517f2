"""One pytest session's settings and shared state: stash keys and the values resolved once.

Every layer above the engine reads the session through this module, never through
``plugin.py``: :class:`Settings` is resolved (and every option checked) once in
``pytest_configure``; the run id, the session's runs and the paths named with ``--runset``
live in ``config.stash`` under the keys below. Importing this module costs only pytest: a
session that collects no run-set must not pay for pydantic, execnet or filelock.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_runset.engine.scheduler import RetryDelay
from pytest_runset.engine.supervision import BACKSTOP_MARGIN_S
from pytest_runset.model.fsnames import os_name
from pytest_runset.session.familiar_options import adopted
from pytest_runset.session.options import timeout_value, workers_value, xdist_available

if TYPE_CHECKING:
    from pytest_runset.engine.state import RunsetRun
    from pytest_runset.model.flows import RunSet

# The names pytest collects as run-set files without ``--runset``.
RUNSET_PATTERNS = ("run-set*.toml", "*.runset.toml")
# Resolved paths named with ``--runset`` (collected whatever their name).
EXPLICIT = pytest.StashKey[set[Path]]()
# The run-set files this session loaded, by resolved path (each loaded once).
LOADED: pytest.StashKey[dict[Path, RunSet]] = pytest.StashKey()
# The runs of this session, whoever ran them (the run loop or the xdist controller).
RUNS: pytest.StashKey[dict[str, RunsetRun]] = pytest.StashKey()
RUN_ID = pytest.StashKey[str]()
# Whether ``-n`` is pytest-runset's own (pytest-xdist is not installed or not active).
OWN_N = pytest.StashKey[bool]()
SETTINGS: pytest.StashKey[Settings] = pytest.StashKey()


class FlowExecutor(Protocol):
    """Runs a flow item through pytest's own protocol (inside a pytest-xdist worker).

    The session's items call it without knowing who implements it: the xdist layer puts its
    executor under :data:`FLOW_EXECUTOR` in ``pytest_configure``.
    """

    def setup(self, item: pytest.Item) -> None: ...

    def call(self, item: pytest.Item) -> None: ...


FLOW_EXECUTOR = pytest.StashKey[FlowExecutor]()


@dataclass(frozen=True)
class Settings:
    """What the options and ini settings ask of this session's flows, checked once."""

    # ``--runset-timeout``: every flow's timeout, whatever the run-set says.
    timeout_override: float | None
    # ``--runset-retries``: every flow's retries, whatever the run-set says.
    retries_override: int | None
    # ini ``runset_max_restarts``: how often lost workers may be replaced (None: 4 x workers).
    max_restarts: int | None
    # ini ``runset_backstop_margin``: how long past timeout + kill grace an unresponsive
    # worker is trusted before it is killed.
    backstop_margin: float
    # ``--runset-global-timeout``: the whole run's deadline.
    global_timeout: float | None
    fail_on_flaky: bool
    # ``--runset-containment``: the tier for every run-set, whatever its file says.
    containment_override: str | None = None
    # pytest-rerunfailures' ``--reruns-delay`` (and its backoff factor): the wait before a
    # flow's next attempt is dispatched.
    retry_delay: RetryDelay = field(default_factory=RetryDelay)


def resolve_settings(config: pytest.Config) -> Settings:
    """The session's :class:`Settings`; a ``pytest.UsageError`` for a bad value.

    Other plugins' options (``--timeout``, ``--reruns``, ``--session-timeout``) count where
    pytest-runset's own are not given (:mod:`.familiar_options`).
    """
    option = config.option
    if option.runset_retries is not None and option.runset_retries < 0:
        raise pytest.UsageError("--runset-retries: must not be negative")
    max_restarts = ini_number(config, "runset_max_restarts", int)
    margin = ini_number(config, "runset_backstop_margin", float)
    foreign = adopted(config)
    return Settings(
        timeout_override=(
            timeout_value(option.runset_timeout)
            if option.runset_timeout is not None
            else foreign.timeout
        ),
        retries_override=(
            option.runset_retries if option.runset_retries is not None else foreign.retries
        ),
        max_restarts=int(max_restarts) if max_restarts is not None else None,
        # Unset or empty: the default, never 0 s.
        backstop_margin=float(margin) if margin is not None else BACKSTOP_MARGIN_S,
        global_timeout=(
            timeout_value(option.runset_global_timeout, "--runset-global-timeout")
            if option.runset_global_timeout is not None
            else foreign.global_timeout
        ),
        fail_on_flaky=bool(option.runset_fail_on_flaky),
        containment_override=option.runset_containment,
        retry_delay=RetryDelay(foreign.retry_delay, foreign.retry_backoff),
    )


def settings(config: pytest.Config) -> Settings:
    """The settings ``pytest_configure`` resolved (resolved now if it has not run)."""
    resolved = config.stash.get(SETTINGS, None)
    if resolved is None:
        resolved = config.stash[SETTINGS] = resolve_settings(config)
    return resolved


def ini_number(config: pytest.Config, name: str, kind: Callable[[str], float]) -> float | None:
    """A non-negative number from an ini setting, ``None`` when it is unset or empty."""
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


def is_runset_path(path: Path) -> bool:
    """Whether pytest collects this file as a run-set by its name alone."""
    return any(fnmatch.fnmatch(path.name, pattern) for pattern in RUNSET_PATTERNS)


def own_n(config: pytest.Config) -> bool:
    """Whether ``-n`` is pytest-runset's own (no pytest-xdist in this session)."""
    if config.stash.get(OWN_N, None) is None:
        config.stash[OWN_N] = not xdist_available(config.pluginmanager)
    return config.stash[OWN_N]


def xdist_distributing(config: pytest.Config) -> bool:
    """Whether pytest-xdist runs this session's items (controller or worker)."""
    if hasattr(config, "workerinput"):
        return True
    if config.stash.get(OWN_N, True):
        return False
    numprocesses = getattr(config.option, "numprocesses", None)
    dist = getattr(config.option, "dist", "no")
    return bool(numprocesses) and dist != "no"


def xdist_controller_session(config: pytest.Config) -> bool:
    """Whether this process is the controller of a pytest-xdist session that distributes."""
    return not hasattr(config, "workerinput") and xdist_distributing(config)


def resolve_workers(config: pytest.Config, runsets: list[RunSet]) -> int:
    """How many of pytest-runset's own workers run the flows."""
    if config.option.runset_workers is not None:
        return workers_value(config.option.runset_workers, "--runset-workers")
    if config.stash.get(OWN_N, False) and config.option.numprocesses is not None:
        return workers_value(str(config.option.numprocesses), "-n")
    concurrency = [rs.settings.concurrency for rs in runsets if rs.settings.concurrency]
    return max(concurrency) if concurrency else 1


def output_root(config: pytest.Config, runset: RunSet) -> Path:
    """Where the run directories of ``runset`` go (``--runset-output``, ``output``, default)."""
    if config.option.runset_output:
        root = Path(config.option.runset_output)
        if not root.is_absolute():
            root = config.invocation_params.dir / root
        return root
    if runset.settings.output:
        # The run-set's text, as a name the file system takes under any locale.
        return Path(runset.directory) / os_name(runset.settings.output)
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
            # Deferred: the results layer brings filelock, which a session without flows skips.
            from pytest_runset.results.report import new_run_id

            run_id = new_run_id()
        config.stash[RUN_ID] = run_id
    return run_id


def report_paths(config: pytest.Config) -> list[Path]:
    """The ``report.json`` files this session wrote (one per run-set), in collection order."""
    runs = config.stash.get(RUNS, None)
    if runs is None:
        return []
    return [Path(run.report_path) for run in runs.values() if run.report_path]

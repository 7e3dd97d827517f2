"""A session's coordinator and shared queue: which URL, the checks, the connection.

``--runset-coordinator`` wins, then ``$RUNSET_COORDINATOR``, then a run-set's
``[runset] coordinator`` (a CI pipeline sets the variable for every job; a file names a
default). Everything is checked before any flow starts: a bad URL, a missing extra, an
unreachable server, a queue of another run-set are one line and exit code 4.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from pytest_runset.results.formats import QueueInfo

if TYPE_CHECKING:
    from pytest_runset.model.flows import RunSet
    from pytest_runset.resources.coordinator import Coordinator, CoordinatorURL
    from pytest_runset.resources.shared_queue import SharedQueue
    from pytest_runset.session.collect import RunsetItem


@dataclass
class Coordination:
    """The session's connection to the coordinator, and its queue when it has one."""

    coordinator: Coordinator
    queue: SharedQueue | None
    # What every session of the queue must agree on (run-sets and selection).
    digest: str
    # The line that ends the session when the coordinator went away mid-run.
    stopped_by: str | None = None

    def close(self) -> None:
        self.coordinator.close()


COORDINATION = pytest.StashKey[Coordination]()
# ``queue`` of this session's report.json (set when the reports are written).
QUEUE_INFO = pytest.StashKey[QueueInfo]()


def given_url(config: pytest.Config) -> tuple[str, str] | None:
    """The URL the command line or the environment names, and where it came from."""
    if config.option.runset_coordinator:
        return str(config.option.runset_coordinator), "--runset-coordinator"
    if os.environ.get("RUNSET_COORDINATOR"):
        return os.environ["RUNSET_COORDINATOR"], "RUNSET_COORDINATOR"
    return None


def check_options(config: pytest.Config) -> None:
    """``pytest_configure``'s checks: the URL, the queue name, their place next to xdist."""
    from pytest_runset.resources.coordinator import CoordinatorError, parse_url
    from pytest_runset.resources.shared_queue import check_name

    given = given_url(config)
    try:
        if given is not None:
            url = parse_url(*given)
            warning = url.warning()
            if warning:
                config.issue_config_time_warning(pytest.PytestConfigWarning(warning), 2)
        if config.option.runset_queue is not None:
            check_name(config.option.runset_queue)
    except CoordinatorError as exc:
        raise pytest.UsageError(str(exc)) from None


def refuse_under_xdist(config: pytest.Config) -> None:
    """Under pytest-xdist's ``-n`` the flows run in xdist's workers, which hold no
    coordinator connection: refused in one line rather than half honoured."""
    for name in ("runset_coordinator", "runset_queue"):
        value = getattr(config.option, name, None)
        if value:
            option = "--" + name.replace("_", "-")
            raise pytest.UsageError(
                f"{option} and pytest-xdist's -n: give one of them (coordinated runs use "
                "pytest-runset's own workers: --runset-workers N or -p no:xdist -n N)"
            )


def resolve_url(config: pytest.Config, runsets: Sequence[RunSet]) -> CoordinatorURL | None:
    from pytest_runset.resources.coordinator import CoordinatorError, parse_url

    given = given_url(config)
    if given is None:
        named = [
            (rs.settings.coordinator, f"{rs.path}: [runset] coordinator")
            for rs in runsets
            if rs.settings.coordinator
        ]
        if len({url for url, _ in named}) > 1:
            raise pytest.UsageError(
                f"{named[0][1]} and {named[1][1]} name different coordinators: give "
                "--runset-coordinator"
            )
        given = named[0] if named else None
    if given is None:
        return None
    try:
        url = parse_url(*given)
    except CoordinatorError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.option.runset_coordinator is None and os.environ.get("RUNSET_COORDINATOR") is None:
        # Named by a file: its warning was not given at configure time.
        warning = url.warning()
        if warning:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(warning, yellow=True)
    return url


def open_coordination(config: pytest.Config, flows: list[RunsetItem]) -> Coordination | None:
    """Connect to the session's coordinator (``None`` without one) and check its queue."""
    runsets = list({str(item.runset.path): item.runset for item in flows}.values())
    url = resolve_url(config, runsets)
    name = config.option.runset_queue
    if url is None:
        if name is not None:
            raise pytest.UsageError(
                f"--runset-queue {name} needs a coordinator: --runset-coordinator URL, "
                "RUNSET_COORDINATOR or [runset] coordinator"
            )
        return None
    from pytest_runset.engine.queue_scheduler import queue_digest
    from pytest_runset.resources.coordinator import CoordinatorError, connect
    from pytest_runset.resources.shared_queue import SharedQueue

    try:
        coordinator = connect(url)
    except CoordinatorError as exc:
        raise pytest.UsageError(f"runset: {exc}") from None
    digest = queue_digest([(rs.name, rs.sha256) for rs in runsets], [item.nodeid for item in flows])
    coordination = Coordination(coordinator, None, digest)
    if name is not None:
        try:
            coordination.queue = SharedQueue(coordinator, name)
            _check_digest(coordination)
        except (CoordinatorError, pytest.UsageError):
            coordinator.close()
            raise
    config.stash[COORDINATION] = coordination
    return coordination


def _check_digest(coordination: Coordination) -> None:
    """A queue seeded by another run-set or selection is refused before anything starts
    (the seed itself checks again, atomically, for sessions that start together)."""
    from pytest_runset.resources.coordinator import redis_errors

    queue = coordination.queue
    assert queue is not None
    try:
        existing = queue.client.hget(queue.key("meta"), "digest")
    except redis_errors() as exc:
        raise pytest.UsageError(f"runset: {coordination.coordinator.describe(exc)}") from None
    if existing is not None and existing != coordination.digest:
        raise pytest.UsageError(
            f"runset: queue {queue.name!r} on {coordination.coordinator.url.shown} holds another "
            f"run-set or selection (digest {existing[:12]}, this session "
            f"{coordination.digest[:12]}): run the same run-set with the same options, or use "
            "another queue name"
        )

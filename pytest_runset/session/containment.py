"""The run's containment on the controller's host, for the session that runs it.

Before the first flow: the tier is checked (``containment = "cgroup"`` where cgroups cannot
work is a usage error), what dead runs of this host left behind is killed (one line each),
this run is registered and its watchdog started (:mod:`pytest_runset.gateway.watchdog`).
After the last flow: the run's groups are removed and the watchdog told that all is well.
Shared by the own pool's driver and the pytest-xdist controller.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import pytest

from pytest_runset.engine.attempt import ContainmentPlan
from pytest_runset.gateway import cgroups, watchdog
from pytest_runset.gateway.containment import resolve, run_group_name
from pytest_runset.model.flows import RunSet
from pytest_runset.resources.leases import LeaseError, lock_directory
from pytest_runset.resources.run_registry import (
    Registration,
    cookie_file_for,
    reap_dead_runs,
    register,
)

CONTAINMENT = pytest.StashKey["RunContainment"]()


@dataclass
class RunContainment:
    """This session's run as its host sees it: tier, groups, registration, watchdog."""

    run_id: str
    tier: str
    why_not_cgroup: str | None
    # Names the run's cgroup, registration and cookie file (see containment_key).
    key: str = ""
    cookie_file: str | None = None
    directories: list[str] = field(default_factory=list)
    registration: Registration | None = None
    watchdog_fd: int | None = None
    # Some flow asks for memory_max / pids_max, and the tier cannot enforce them.
    limits_enforced: bool = True
    closed: bool = False
    # Seconds the run spent paused (pytest-runset pause, Ctrl-Z).
    paused_s: float = 0.0

    def note_cookie(self, cookie: str) -> None:
        """A cookie handed out by the controller itself (a service's), for the watchdog."""
        watchdog.note_cookie(self.cookie_file, cookie)

    def plan(self, tier_override: str | None) -> ContainmentPlan:
        """What each attempt's spec carries of the run's containment."""
        return {"tier": tier_override, "group": self.key, "cookie_file": self.cookie_file}

    def close(self) -> None:
        """The run is over: remove its groups, release the watchdog and the registration."""
        if self.closed:
            return
        self.closed = True
        for directory in self.directories:
            cgroups.kill_directory_tree(directory)
            cgroups.remove_directory_tree(directory)
        if self.watchdog_fd is not None:
            watchdog.finish(self.watchdog_fd)
        if self.registration is not None:
            self.registration.close()


def _requested(config: pytest.Config, runsets: Iterable[RunSet]) -> tuple[set[str], str]:
    override = config.option.runset_containment
    if override:
        return {override}, "--runset-containment cgroup"
    asked: set[str] = {runset.settings.containment for runset in runsets}
    files = [str(r.path) for r in runsets if r.settings.containment == "cgroup"]
    return asked, f'{files[0] if files else "run-set"}: [runset] containment = "cgroup"'


def containment_key(run_id: str, run_dirs: list[Path]) -> str:
    """The session's run on this host: its id and where its directories are, so that two
    sessions with one run id in two output directories never share a group or a watchdog."""
    where = "\n".join(sorted(str(path) for path in run_dirs))
    return f"{run_id}.{hashlib.sha256(where.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"


def start_containment(
    config: pytest.Config, run_id: str, runsets: list[RunSet], run_dirs: list[Path]
) -> RunContainment:
    """Check the tier, clean up after dead runs, register this run and start its watchdog."""
    existing = config.stash.get(CONTAINMENT, None)
    if existing is not None and not existing.closed:
        return existing
    asked, source = _requested(config, runsets)
    tier, tree, why = resolve("process-group" if asked == {"process-group"} else "auto")
    if "cgroup" in asked and tree is None:
        raise pytest.UsageError(f"{source}: cgroups cannot be used here: {why}")
    key = containment_key(run_id, run_dirs)
    run = RunContainment(run_id=run_id, tier=tier, why_not_cgroup=why, key=key)
    limited = any(
        flow.memory_max is not None or flow.pids_max is not None
        for runset in runsets
        for flow in runset.flows
    )
    if limited and tree is None:
        run.limits_enforced = False
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"runset: warning: memory_max and pids_max are not enforced "
                f"(no cgroup tier: {why or 'containment = process-group'})",
                yellow=True,
            )
    if tree is not None:
        run.directories = cgroups.Group(tree, run_group_name(key)).directories
    try:
        lock_dir = lock_directory()
    except LeaseError as exc:
        raise pytest.UsageError(str(exc)) from None
    for dead_run, killed in reap_dead_runs(lock_dir, key, watchdog.clean):
        if killed:
            _say(
                config,
                f"runset: killed {killed} process(es) left running by run {dead_run}, "
                "whose session died",
            )
    try:
        run.registration = register(lock_dir, key, run_id, run.directories)
    except OSError as exc:
        raise pytest.UsageError(f"runset: cannot register run {run_id}: {exc}") from None
    run.cookie_file = str(cookie_file_for(lock_dir, key))
    with contextlib.suppress(OSError):
        _pid, run.watchdog_fd = watchdog.spawn(
            run.cookie_file, run.directories, run.registration.fd
        )
    config.stash[CONTAINMENT] = run
    config.add_cleanup(run.close)
    return run


class ContainmentFields(TypedDict):
    containment: str
    limits_enforced: bool
    paused_s: float


def containment_fields(config: pytest.Config) -> ContainmentFields:
    """The run report's ``containment``, ``limits_enforced`` and ``paused_s``."""
    run = config.stash.get(CONTAINMENT, None)
    if run is None:
        return {"containment": "process-group", "limits_enforced": True, "paused_s": 0.0}
    return {
        "containment": run.tier,
        "limits_enforced": run.limits_enforced,
        "paused_s": round(run.paused_s, 3),
    }


def record_paused(config: pytest.Config, paused_s: float) -> None:
    """The run's total paused time so far, for its report's ``paused_s``."""
    run = config.stash.get(CONTAINMENT, None)
    if run is not None:
        run.paused_s = paused_s


def containment_plan(config: pytest.Config) -> ContainmentPlan | None:
    run = config.stash.get(CONTAINMENT, None)
    return run.plan(config.option.runset_containment) if run is not None else None


def run_containment(config: pytest.Config) -> RunContainment | None:
    """This session's run containment, once it started."""
    return config.stash.get(CONTAINMENT, None)


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, yellow=True)
    else:
        os.write(2, (line + "\n").encode())

"""A flow attempt's processes as one unit: contained, measured, limited, paused, killed.

Two tiers (stdlib only; this runs inside every gateway):

``cgroup``
    The attempt gets its own group under the run's group (:mod:`.cgroups`). Processes the
    flow starts are moved into it between fork and exec; a callable flow runs in the worker
    itself, so the worker joins the group for the attempt. ``cgroup.kill`` after the attempt
    ends everything that was forked, whatever its session, environment or pid games.

``process-group``
    The worker is a child subreaper (``PR_SET_CHILD_SUBREAPER``): whatever the flow leaves
    behind when its parent exits is re-parented to the worker instead of init. After the
    attempt every such adopted process and its descendants are killed, then the cookie sweep
    runs as the last net.

Usage is measured either way: the group's ``cpu.stat`` and peak memory, or the
``getrusage`` of the children the worker reaped during the attempt.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pytest_runset.gateway import cgroups
from pytest_runset.gateway.protocol import AttemptResult

TIERS = ("auto", "cgroup", "process-group")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_ADOPTED_ROUNDS = 20


@functools.cache
def _libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once per process: a lookup (``dlopen``) costs more than
    the call, and must never run in a child between fork and exec, where another thread may
    have held the loader's lock at the fork."""
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _prctl(option: int, value: int) -> bool:
    prctl = _libc_prctl()
    return prctl is not None and int(prctl(option, value, 0, 0, 0)) == 0


# The worker's containment, for runners that must start something outside the flow's group
# (the Playwright driver outlives flows). One per worker process; None outside workers.
CURRENT: Containment | None = None


def run_group_name(group_key: str) -> str:
    """The run's group under this process's own: one per session's run directories (two
    sessions with one run id in two output directories never share it)."""
    return cgroups.group_name("runset", group_key)


def note_cookie(cookie: str) -> None:
    """A cookie this worker hands out (an attempt, its browser): listed for the run's
    watchdog and for a later session that cleans up after a dead run."""
    keeper = CURRENT
    if keeper is not None and keeper.cookie_file:
        from pytest_runset.gateway.watchdog import note_cookie as append

        append(keeper.cookie_file, cookie)


def resolve(requested: str) -> tuple[str, cgroups.Tree | None, str | None]:
    """The tier that runs here: ``(tier, tree, why cgroups are not used)``."""
    if requested == "process-group":
        return "process-group", None, None
    found = cgroups.discover()
    if isinstance(found, str):
        return "process-group", None, found
    return "cgroup", found, None


@dataclass
class Usage:
    """What an attempt's processes used, and how its containment ended."""

    cpu_s: float = 0.0
    peak_memory_bytes: int | None = None
    killed: int = 0
    oom_killed: bool = False
    limits_enforced: bool = True


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` file)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found.extend(int(p) for p in handle.read().split())
        except (OSError, ValueError):
            continue
    return found


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


class Containment:
    """One worker's containment: the tier, the run's group, the attempt running now."""

    def __init__(self, requested: str, group_key: str, cookie_file: str | None = None) -> None:
        self.tier, self.tree, self.why_not = resolve(requested)
        self.run_group = run_group_name(group_key)
        # Where the run lists the cookies it hands out, for its watchdog (local workers).
        self.cookie_file = cookie_file
        # Processes the worker itself keeps across flows (the Playwright driver).
        self.keep: set[int] = set()
        self.current: Attempt | None = None
        if self.tier == "process-group":
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)

    def attempt(
        self, cookie: str, *, memory_max: int | None, pids_max: int | None, in_process: bool
    ) -> Attempt:
        attempt = Attempt(self, cookie, memory_max, pids_max, in_process)
        self.current = attempt
        note_cookie(cookie)
        return attempt

    def keep_current_children(self) -> None:
        """The worker started a helper that outlives flows (the Playwright driver): its
        current children are not a flow's leftovers."""
        self.keep.update(_children(os.getpid()))

    @contextlib.contextmanager
    def outside_flow(self) -> Iterator[None]:
        """Start something that outlives the flow (the Playwright driver) from the worker's
        own group, not the flow's."""
        attempt = self.current
        moved = attempt is not None and attempt.worker_inside
        if moved and attempt is not None:
            attempt.leave()
        try:
            yield
        finally:
            if moved and attempt is not None:
                attempt.enter()
            self.keep_current_children()


def _joining(fds: list[int], *, die_with_parent: bool) -> Callable[[], None]:
    """A ``preexec_fn``: the child joins the groups whose ``cgroup.procs`` are open as
    ``fds`` (writing ``0``, itself), and optionally dies with the thread that started it."""
    fds = list(fds)
    # Resolved here, in the parent: the child only writes and makes the system call.
    prctl = _libc_prctl() if die_with_parent else None

    def enter_group() -> None:
        for fd in fds:
            os.write(fd, b"0")
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return enter_group


class HelperGroup:
    """The group of a process that runs beside flows (a service, a flow's sidecar)."""

    def __init__(self, group: cgroups.Group) -> None:
        self.group = group
        self.fds: list[int] = group.open_procs()

    @classmethod
    def make(
        cls, tree: cgroups.Tree | None, run_group: str, prefix: str, key: str
    ) -> HelperGroup | None:
        """The group, or None in the process-group tier (or when it cannot be made)."""
        if tree is None:
            return None
        group = cgroups.Group(tree, run_group, cgroups.group_name(prefix, key))
        try:
            group.create(memory_max=None, pids_max=None)
            return cls(group)
        except OSError:
            return None

    def preexec(self) -> Callable[[], None]:
        return _joining(self.fds, die_with_parent=False)

    def started(self) -> None:
        """The process is in the group: the descriptors are no longer needed."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def close(self) -> int:
        """Kill whatever is left in the group and remove it; return how many were killed."""
        self.started()
        killed = self.group.kill()
        self.group.remove()
        return killed


@dataclass
class Attempt:
    owner: Containment
    cookie: str
    memory_max: int | None
    pids_max: int | None
    in_process: bool
    group: cgroups.Group | None = None
    fds: list[int] = field(default_factory=list)
    worker_inside: bool = False
    limits_enforced: bool = True
    home: cgroups.Group | None = None
    before_children: set[int] = field(default_factory=set)
    rusage_children: resource.struct_rusage | None = None
    rusage_self: resource.struct_rusage | None = None
    paused: bool = False
    sidecar: HelperGroup | None = None

    def start(self) -> None:
        """Create the attempt's group (cgroup tier) before anything of the flow runs."""
        owner = self.owner
        self.rusage_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.rusage_self = resource.getrusage(resource.RUSAGE_SELF)
        if owner.tree is None:
            self.limits_enforced = self.memory_max is None and self.pids_max is None
            self.before_children = set(_children(os.getpid()))
            return
        self.group = cgroups.Group(
            owner.tree, owner.run_group, cgroups.group_name("flow", self.cookie)
        )
        self.limits_enforced = self.group.create(memory_max=self.memory_max, pids_max=self.pids_max)
        self.fds = self.group.open_procs()
        if self.in_process:
            self.home = cgroups.Group(owner.tree)
            self.enter()

    def enter(self) -> None:
        if self.group is not None:
            self.group.add(os.getpid())
            self.worker_inside = True

    def leave(self) -> None:
        if self.group is not None and self.home is not None and self.worker_inside:
            self.home.add(os.getpid())
            self.worker_inside = False

    def preexec(self) -> Callable[[], None]:
        """``preexec_fn`` for the flow's processes: into the group, and killed with the
        thread that started them if the worker dies."""
        return _joining(self.fds, die_with_parent=True)

    def sidecar_preexec(self) -> Callable[[], None] | None:
        """``preexec_fn`` of the flow's sidecar: a group of its own next to the flow's."""
        self.sidecar = HelperGroup.make(
            self.owner.tree, self.owner.run_group, "sidecar", self.cookie
        )
        return self.sidecar.preexec() if self.sidecar is not None else None

    def pause(self, frozen: bool) -> None:
        """Freeze or thaw every process of the attempt (never the worker itself)."""
        self.paused = frozen
        if self.group is not None and not self.worker_inside and self.group.freeze(frozen):
            return
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        me = os.getpid()
        targets = (
            self.group.pids_inside()
            if self.group is not None
            else [p for p in _descendants(me) if p not in self.owner.keep]
        )
        for pid in targets:
            if pid != me:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)

    def finish(self) -> Usage:
        """Kill whatever of the attempt is left, measure it, remove its group."""
        if self.paused:
            self.pause(False)
        usage = Usage(limits_enforced=self.limits_enforced)
        group = self.group
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        if self.sidecar is not None:
            usage.killed += self.sidecar.close()
        if group is not None:
            self.leave()
            usage.killed += group.kill()
            usage.cpu_s = round(group.cpu_s() or 0.0, 6)
            usage.peak_memory_bytes = group.peak_memory_bytes()
            usage.oom_killed = group.oom_killed()
            group.remove()
        else:
            usage.killed += self._kill_adopted()
            self._add_rusage(usage)
        if self.owner.current is self:
            self.owner.current = None
        return usage

    def _kill_adopted(self) -> int:
        """Kill every process the worker adopted during the attempt, with its descendants,
        and reap them (they are the worker's children now)."""
        me = os.getpid()
        killed: set[int] = set()
        spare = self.before_children | self.owner.keep
        for _ in range(_ADOPTED_ROUNDS):
            adopted = [p for p in _children(me) if p not in spare]
            if not adopted:
                break
            for pid in adopted:
                for target in [pid, *_descendants(pid)]:
                    with contextlib.suppress(OSError):
                        os.kill(target, signal.SIGKILL)
                        killed.add(target)
            for pid in adopted:
                with contextlib.suppress(OSError):
                    os.waitpid(pid, 0)
        return len(killed)

    def _add_rusage(self, usage: Usage) -> None:
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        before = self.rusage_children
        cpu = 0.0
        if before is not None:
            cpu += (after_children.ru_utime - before.ru_utime) + (
                after_children.ru_stime - before.ru_stime
            )
            # ru_maxrss of the children is a maximum over all of them, ever: it only tells
            # this attempt's peak when the attempt raised it.
            if after_children.ru_maxrss > before.ru_maxrss:
                usage.peak_memory_bytes = after_children.ru_maxrss * 1024
        if self.in_process and self.rusage_self is not None:
            after_self = resource.getrusage(resource.RUSAGE_SELF)
            cpu += (after_self.ru_utime - self.rusage_self.ru_utime) + (
                after_self.ru_stime - self.rusage_self.ru_stime
            )
        usage.cpu_s = round(max(cpu, 0.0), 6)


def memory_text(limit: int) -> str:
    """``512 MiB``, ``2 GiB``, ``1.5 MiB``: a limit the way users write it."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size:
            value = limit / size
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{limit} bytes"


def record_usage(result: AttemptResult, attempt: Attempt, usage: Usage, paused_s: float) -> None:
    """Put the attempt's containment, usage and pause time into its result. A flow the
    kernel killed for its memory limit is ``failed``, saying so."""
    result["containment"] = "cgroup" if attempt.group is not None else "process-group"
    result["resources"] = {"cpu_s": usage.cpu_s, "peak_memory_bytes": usage.peak_memory_bytes}
    result["limits_enforced"] = usage.limits_enforced
    if paused_s:
        result["paused_s"] = round(paused_s, 3)
    if usage.oom_killed and attempt.memory_max is not None and result.get("status") != "passed":
        peak = usage.peak_memory_bytes
        shown = f" (peak {memory_text(peak)})" if peak else ""
        result["status"] = "failed"
        result["message"] = (
            f"memory limit {memory_text(attempt.memory_max)} exceeded{shown}: "
            f"the kernel killed the flow's process ({result.get('message', '')})"
        )


def end_orphaned_attempt(group_key: str, cookie: str) -> Usage | None:
    """An attempt whose worker died (a crash, a memory kill, a flow that killed it): kill
    what is left in its groups, read its usage, remove them. None when there is no group
    on this host (the process-group tier, a remote worker)."""
    found = cgroups.discover()
    if isinstance(found, str):
        return None
    run_group = run_group_name(group_key)
    group = cgroups.Group(found, run_group, cgroups.group_name("flow", cookie))
    if not os.path.isdir(group.v2):
        return None
    usage = Usage()
    sidecar = cgroups.Group(found, run_group, cgroups.group_name("sidecar", cookie))
    if os.path.isdir(sidecar.v2):
        usage.killed += sidecar.kill()
        sidecar.remove()
    usage.killed += group.kill()
    usage.cpu_s = round(group.cpu_s() or 0.0, 6)
    usage.peak_memory_bytes = group.peak_memory_bytes()
    usage.oom_killed = group.oom_killed()
    group.remove()
    return usage


def orphaned_result(result: AttemptResult, usage: Usage, memory_max: int | None) -> None:
    """What an orphaned attempt's group tells about it: its usage, and a memory kill (the
    kernel's OOM killer picked the worker itself, which ran a callable flow's code)."""
    result["containment"] = "cgroup"
    result["resources"] = {"cpu_s": usage.cpu_s, "peak_memory_bytes": usage.peak_memory_bytes}
    result["leftover_processes"] = int(result.get("leftover_processes") or 0) + usage.killed
    if usage.oom_killed and memory_max is not None:
        peak = usage.peak_memory_bytes
        shown = f" (peak {memory_text(peak)})" if peak else ""
        result["status"] = "failed"
        result["message"] = (
            f"memory limit {memory_text(memory_max)} exceeded{shown}: "
            f"the kernel killed the worker running the flow ({result.get('message', '')})"
        )


def watch_worker(keeper: Containment) -> int | None:
    """A watchdog for this worker's own groups (a remote worker's); returns the pipe's write
    end to keep open for as long as the worker lives."""
    from pytest_runset.gateway import watchdog

    if keeper.tree is None:
        return None
    directories = cgroups.Group(keeper.tree, keeper.run_group).directories
    try:
        _pid, fd = watchdog.spawn(None, directories)
    except OSError:
        return None
    return fd

"""Control groups for flows, sidecars and services (stdlib only: runs inside gateways too).

A group is one directory in the cgroup v2 tree (membership, ``cgroup.kill``, ``cgroup.freeze``,
``cpu.stat``) plus, on hosts in *hybrid* mode, a directory of the same name in the v1
``memory`` and ``pids`` hierarchies (limits and peak usage live there). On a host with one v2
tree the memory and pids files are in the v2 directory itself, when those controllers are
delegated to it.

Groups are created under the cgroup this process already belongs to, read from
``/proc/self/cgroup``: that is where systemd delegation (``Delegate=yes``), a container's
cgroup namespace and a root shell all give a writable subtree, and it never needs a path
guessed from outside. Everything a group's first process forks stays in the group, whatever
its session, environment or pid games, so writing ``1`` to ``cgroup.kill`` ends it all.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass

from pytest_runset.gateway.proctree import read_kernel_file

_SELF_CGROUP = "/proc/self/cgroup"
_MOUNTINFO = "/proc/self/mountinfo"
# cgroupfs names are file names; long cookies are hashed into a short stable name.
_MAX_NAME = 120
_EMPTY_WAIT_S = 5.0


@dataclass(frozen=True)
class Tree:
    """This process's own groups: the v2 one and, in hybrid mode, the v1 memory/pids ones."""

    v2: str
    memory_v1: str | None
    pids_v1: str | None


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) + 1 and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def _mounts() -> dict[str, tuple[str, str]]:
    """Mount root and mount point of the v2 tree (key ``""``) and the v1 memory/pids ones."""
    found: dict[str, tuple[str, str]] = {}
    with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            root, point = _unescape(fields[3]), _unescape(fields[4])
            if tail[0] == "cgroup2":
                found.setdefault("", (root, point))
            elif tail[0] == "cgroup":
                for option in tail[2].split(","):
                    if option in ("memory", "pids"):
                        found.setdefault(option, (root, point))
    return found


def _own_paths() -> dict[str, str]:
    """This process's group path per hierarchy: ``""`` for v2, controller names for v1."""
    paths: dict[str, str] = {}
    with open(_SELF_CGROUP, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            _hid, controllers, path = parts
            if controllers == "":
                paths[""] = path
            for name in controllers.split(","):
                if name in ("memory", "pids"):
                    paths[name] = path
    return paths


def _directory(mount: tuple[str, str], path: str) -> str:
    root, point = mount
    # Without a cgroup namespace a container may see a mount whose root is its own subtree.
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return os.path.join(point, path.lstrip("/"))


def discover() -> Tree | str:
    """This process's writable groups, or why groups cannot be used here (one line)."""
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError as exc:
        return f"cannot read the cgroup mounts ({exc.strerror or exc})"
    if "" not in mounts or "" not in own:
        return "no cgroup v2 hierarchy is mounted"
    v2 = _directory(mounts[""], own[""])
    if not os.path.exists(os.path.join(v2, "cgroup.procs")):
        return f"this process's cgroup {v2} is not visible"
    if not os.access(v2, os.W_OK):
        return f"cgroup {v2} is not writable (no delegated subtree for this user)"
    v1 = {
        name: _directory(mounts[name], own[name])
        for name in ("memory", "pids")
        if name in mounts and name in own and mounts[name][1] != mounts[""][1]
    }
    v1 = {name: path for name, path in v1.items() if os.access(path, os.W_OK)}
    tree = Tree(v2=v2, memory_v1=v1.get("memory"), pids_v1=v1.get("pids"))
    probe = os.path.join(v2, f"runset-probe-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        return f"cannot create a group under {v2} ({exc.strerror or exc})"
    try:
        if not os.path.exists(os.path.join(probe, "cgroup.kill")) and not os.path.exists(
            os.path.join(probe, "cgroup.freeze")
        ):
            return "the kernel's cgroup v2 has neither cgroup.kill nor cgroup.freeze"
    finally:
        os.rmdir(probe)
    return tree


def group_name(prefix: str, key: str) -> str:
    """A directory name for ``key`` (a cookie, a service name) that cgroupfs accepts."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)
    if len(safe) + len(prefix) + 1 > _MAX_NAME or safe != key:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        safe = f"{safe[: _MAX_NAME - len(prefix) - 18]}.{digest}"
    return f"{prefix}-{safe}"


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str | None:
    data = read_kernel_file(path)
    return None if data is None else data.decode("ascii", "replace")


def _stat_value(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


class Group:
    """One flow attempt's (or sidecar's, or service's) group, in every hierarchy it uses."""

    def __init__(self, tree: Tree, *parts: str) -> None:
        self.tree = tree
        self.parts = parts
        self.v2 = os.path.join(tree.v2, *parts)
        self.memory = os.path.join(tree.memory_v1, *parts) if tree.memory_v1 else None
        self.pids = os.path.join(tree.pids_v1, *parts) if tree.pids_v1 else None

    @property
    def directories(self) -> list[str]:
        return [d for d in (self.v2, self.memory, self.pids) if d is not None]

    def create(self, *, memory_max: int | None, pids_max: int | None) -> bool:
        """Create the group (and its parents); apply the limits. True when every limit asked
        for is enforced. Raises OSError when the group itself cannot be made."""
        for directory in self.directories:
            os.makedirs(directory, exist_ok=True)
        enforced = True
        if memory_max is not None:
            enforced &= self._limit_memory(memory_max)
        if pids_max is not None:
            enforced &= self._limit_pids(pids_max)
        return enforced

    def _limit_memory(self, limit: int) -> bool:
        if self.memory is not None:
            try:
                _write(os.path.join(self.memory, "memory.limit_in_bytes"), str(limit))
            except OSError:
                return False
            try:
                # Swap must not become a way around the limit.
                _write(os.path.join(self.memory, "memory.memsw.limit_in_bytes"), str(limit))
            except OSError:
                pass
            return True
        return self._v2_limit("memory", {"memory.max": str(limit), "memory.swap.max": "0"})

    def _limit_pids(self, limit: int) -> bool:
        if self.pids is not None:
            try:
                _write(os.path.join(self.pids, "pids.max"), str(limit))
            except OSError:
                return False
            return True
        return self._v2_limit("pids", {"pids.max": str(limit)})

    def _v2_limit(self, controller: str, files: dict[str, str]) -> bool:
        # A v2 controller works in a group only when every ancestor below the delegation
        # point enables it for its children: try along our own path, and accept a refusal.
        for depth in range(len(self.parts)):
            parent = os.path.join(self.tree.v2, *self.parts[:depth])
            try:
                _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")
            except OSError:
                pass
        applied = False
        for name, value in files.items():
            try:
                _write(os.path.join(self.v2, name), value)
                applied = True
            except OSError:
                if name.startswith(f"{controller}.max") or name == "pids.max":
                    return False
        return applied

    def _procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.directories]

    def open_procs(self) -> list[int]:
        """Open the group's ``cgroup.procs`` files now, for a child to join the group between
        fork and exec by writing ``0`` (itself) to each: writing to an already open
        descriptor is safe there. The caller closes them."""
        return [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in self._procs_files()]

    def add(self, pid: int) -> None:
        for path in self._procs_files():
            _write(path, str(pid))

    def pids_inside(self) -> list[int]:
        text = _read(os.path.join(self.v2, "cgroup.procs")) or ""
        return [int(line) for line in text.split() if line.isdigit()]

    def freeze(self, frozen: bool) -> bool:
        try:
            _write(os.path.join(self.v2, "cgroup.freeze"), "1" if frozen else "0")
        except OSError:
            return False
        return True

    def kill(self) -> int:
        """Kill every process in the group; return how many there were. Waits (bounded) until
        the group is empty."""
        inside = self.pids_inside()
        if not inside:
            return 0
        try:
            _write(os.path.join(self.v2, "cgroup.kill"), "1")
        except OSError:
            # Kernels before 5.14: freeze so nothing forks, kill each, thaw so they can die.
            self.freeze(True)
            for pid in self.pids_inside():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.freeze(False)
        deadline = time.monotonic() + _EMPTY_WAIT_S
        while self.pids_inside() and time.monotonic() < deadline:
            time.sleep(0.005)
        return len(inside)

    def cpu_s(self) -> float | None:
        usec = _stat_value(_read(os.path.join(self.v2, "cpu.stat")), "usage_usec")
        return None if usec is None else usec / 1e6

    def peak_memory_bytes(self) -> int | None:
        if self.memory is not None:
            text = _read(os.path.join(self.memory, "memory.max_usage_in_bytes"))
        else:
            text = _read(os.path.join(self.v2, "memory.peak"))
        text = (text or "").strip()
        return int(text) if text.isdigit() else None

    def oom_killed(self) -> bool:
        if self.memory is not None:
            text = _read(os.path.join(self.memory, "memory.oom_control"))
        else:
            text = _read(os.path.join(self.v2, "memory.events"))
        return (_stat_value(text, "oom_kill") or 0) > 0

    def remove(self) -> None:
        """Remove the group's directories (children first is the caller's business)."""
        for directory in self.directories:
            for _ in range(50):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # Busy for a moment while the last killed process is released.
                    time.sleep(0.01)


def kill_directory_tree(top: str) -> int:
    """Kill every process in a v2 group directory and its children (``cgroup.kill`` is
    recursive; the fallback goes group by group). Returns how many there were. Directories
    of v1 hierarchies hold no ``cgroup.kill`` and are skipped: their processes are the same
    ones, in the v2 tree."""
    if not os.path.exists(os.path.join(top, "cgroup.kill")) and not os.path.exists(
        os.path.join(top, "cgroup.freeze")
    ):
        return 0
    killed = 0
    for directory, _subdirs, _files in os.walk(top, topdown=False):
        # A group known only by its directory (a dead run's): its v2 part is all we need.
        killed += Group(Tree(v2=directory, memory_v1=None, pids_v1=None)).kill()
    return killed


def remove_directory_tree(top: str) -> None:
    """Remove a group directory and its children, deepest first (empty groups only)."""
    for directory, subdirs, _files in os.walk(top, topdown=False):
        for sub in subdirs:
            try:
                os.rmdir(os.path.join(directory, sub))
            except OSError:
                pass
    try:
        os.rmdir(top)
    except OSError:
        pass

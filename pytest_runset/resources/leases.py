"""Leases on what parallel flows must not share: personas, ports and tag-limit slots.

A lease is an exclusive ``filelock`` on a file in a per-user lock directory, so it holds
between the flows of one session *and* between concurrent pytest sessions on the host. The
operating system drops a lock when its holder dies, so a SIGKILLed session leaves no stale
lease behind. Leases are taken and released on the controller's main thread only.
"""

from __future__ import annotations

import contextlib
import os
import random
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import filelock

from pytest_runset.gateway.hostports import port_is_bindable

LOCK_DIR_ENV = "RUNSET_LOCK_DIR"


class LeaseError(Exception):
    """The lock directory cannot be trusted or used; one-line message."""


def lock_directory() -> Path:
    """The per-user lock directory (``$RUNSET_LOCK_DIR`` or ``<tmp>/pytest-runset-<uid>``).

    Created with mode 0700. A directory owned by someone else, writable by others, or a
    symlink is refused: whoever can write there could steal or block every lease.
    """
    raw = os.environ.get(LOCK_DIR_ENV) or os.path.join(
        tempfile.gettempdir(), f"pytest-runset-{os.getuid()}"
    )
    path = Path(raw)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise LeaseError(f"lock directory {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise LeaseError(f"lock directory {path} is not a plain directory")
    if info.st_uid != os.getuid():
        raise LeaseError(f"lock directory {path} belongs to uid {info.st_uid}, not to you")
    if info.st_mode & 0o022:
        raise LeaseError(
            f"lock directory {path} is writable by others (mode {info.st_mode & 0o777:o}); "
            f"use chmod 700 or set {LOCK_DIR_ENV}"
        )
    _check_parents(path)
    return path


def _check_parents(path: Path) -> None:
    """Whoever may rename a parent away could swap the lock directory under held leases:
    every parent must belong to root or to you, and be writable by no one else unless it
    is sticky (as ``/tmp`` is: others cannot rename what is not theirs there)."""
    for parent in Path(os.path.realpath(path)).parents:
        try:
            info = os.stat(parent)
        except OSError as exc:
            raise LeaseError(f"lock directory {path}: {parent}: {exc.strerror or exc}") from None
        if info.st_uid not in (0, os.getuid()):
            raise LeaseError(
                f"lock directory {path}: its parent {parent} belongs to uid {info.st_uid}; "
                f"set {LOCK_DIR_ENV} to a directory of yours"
            )
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise LeaseError(
                f"lock directory {path}: its parent {parent} is writable by others "
                f"(mode {info.st_mode & 0o777:o}) and not sticky; set {LOCK_DIR_ENV} to a "
                "directory of yours"
            )


class Held(Protocol):
    """A lock a lease holds: a file lock, or a coordinator's lease (cluster_leases.py), whose
    release returns a warning when the holder had lost it."""

    @property
    def lock_file(self) -> str: ...

    def release(self, force: bool = False) -> object: ...


@dataclass
class Lease:
    """Locks held for one flow attempt (or a service); release them exactly once."""

    locks: list[Held] = field(default_factory=list)
    persona: str | None = None
    ports: list[int] = field(default_factory=list)
    # Warnings of locks found lost when released (a coordinator's fenced leases).
    lost: list[str] = field(default_factory=list)

    def release(self) -> None:
        while self.locks:
            lock = self.locks.pop()
            with contextlib.suppress(Exception):
                problem = lock.release(force=True)
                if isinstance(problem, str):
                    self.lost.append(problem)


class Leaser:
    """Takes leases without waiting: a busy resource is reported, never waited on here."""

    def __init__(self, lock_dir: Path, rng: random.Random | None = None) -> None:
        self.lock_dir = lock_dir
        self._rng = rng or random.Random()

    def _try(self, name: str) -> filelock.BaseFileLock | None:
        lock = filelock.FileLock(str(self.lock_dir / f"{name}.lock"), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return None
        return lock

    def take(self, name: str, lease: Lease) -> bool:
        """Add the lock ``name`` to ``lease`` if it is free."""
        lock = self._try(name)
        if lock is None:
            return False
        lease.locks.append(lock)
        return True

    def take_persona(self, candidates: Sequence[str], lease: Lease) -> bool:
        """Lease the first free persona of ``candidates`` (a pool is tried from a random member
        on, so that parallel sessions spread over the pool)."""
        if not candidates:
            return False
        start = self._rng.randrange(len(candidates)) if len(candidates) > 1 else 0
        for offset in range(len(candidates)):
            name = candidates[(start + offset) % len(candidates)]
            if self.take(f"persona-{name}", lease):
                lease.persona = name
                return True
        return False

    def take_limit(self, tag: str, limit: int, lease: Lease) -> bool:
        """One of the ``limit`` slots of ``tag``."""
        return any(self.take(f"limit-{tag}-{slot}", lease) for slot in range(limit))

    def take_ports(self, count: int, port_range: tuple[int, int], lease: Lease) -> bool:
        """``count`` ports from ``port_range``: leased *and* free to bind on 127.0.0.1."""
        if count <= 0:
            return True
        low, high = port_range
        size = high - low + 1
        start = self._rng.randrange(size)
        got: list[int] = []
        for offset in range(size):
            port = low + (start + offset) % size
            lock = self._try(f"port-{port}")
            if lock is None:
                continue
            if not port_is_bindable(port):
                lock.release(force=True)
                continue
            lease.locks.append(lock)
            got.append(port)
            if len(got) == count:
                lease.ports.extend(got)
                return True
        return False


def names_of(lease: Lease) -> Iterable[str]:
    """The lock file names a lease holds (for messages and tests)."""
    return [Path(lock.lock_file).stem for lock in lease.locks]

"""A flow directory, opened once: the plugin writes its own files relative to that handle.

A flow owns its directory and may do anything in it: swap it for a symlink to another
directory, plant symlinks where the plugin is about to write (``result.json``,
``failure.png``, ``trace.zip``), or remove it. So the worker opens the directory right after
creating it, before any code of the flow runs (``O_DIRECTORY | O_NOFOLLOW``), and keeps the
descriptor until the attempt's ``result.json`` is written (:func:`open_for_attempt`,
:func:`release`). Every file the plugin writes there is first a temp file beside its final name,
created relative to the descriptor with ``O_CREAT | O_EXCL | O_NOFOLLOW``, then renamed over
the final name: a symlink planted there is replaced, never followed, and its target is left
as it was (:meth:`FlowDir.write`). Subdirectories (a screenshot step's ``shots/list.png``) are
opened one component at a time, again with ``O_NOFOLLOW``.

A flow that moved its directory away still gets the plugin's files in the original directory,
wherever that is now; a flow that removed it gets nothing written anywhere else. Either way
the attempt's result says so (:meth:`FlowDir.problem`).

Stdlib only, like the rest of the gateway side.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
# A file of ours, new: never an existing file, never through a symlink.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC
# Reading what a flow may have replaced: not through a link, never blocking on a FIFO.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_TEMP_TRIES = 8


class UnsafeName(ValueError):
    """A name that would leave the flow directory (absolute, ``..``, empty)."""


def split_name(name: str) -> list[str]:
    """The components of a relative ``name`` inside a flow directory; raises
    :class:`UnsafeName` for one that is absolute, empty, or climbs out with ``..``."""
    if not name or os.path.isabs(name) or "\0" in name:
        raise UnsafeName(f"{name!r} is not a relative path inside the flow directory")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafeName(f"{name!r} is outside the flow directory")
    return parts


class FlowDir:
    """An open flow directory (a descriptor) and the path it was opened at."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: str, *, create: bool = False) -> FlowDir:
        """Open the directory at ``path`` (made first with ``create``); a symlink at ``path``
        itself is refused (``OSError`` ``ELOOP``), so is anything but a directory."""
        if create:
            # The parents are the controller's run directory: created and checked by it.
            os.makedirs(path, exist_ok=True)
        return cls(path, _open_directory(path))

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- where a name lives ------------------------------------------------------------------
    @contextlib.contextmanager
    def _parent(self, name: str, *, create: bool) -> Iterator[tuple[int, str]]:
        """The descriptor of the directory that holds ``name`` and the name's last component;
        ``create`` makes missing subdirectories. No component is followed if it is a link."""
        parts = split_name(name)
        fd = self.fd
        try:
            for part in parts[:-1]:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                inner = _open_directory(part, fd)
                if fd != self.fd:
                    os.close(fd)
                fd = inner
            yield fd, parts[-1]
        finally:
            if fd != self.fd:
                os.close(fd)

    # -- writing -----------------------------------------------------------------------------
    def write(self, name: str, fill: Callable[[BinaryIO], object]) -> None:
        """Write ``name`` atomically: ``fill`` writes a new temp file beside it, which then
        replaces whatever is at ``name`` (a planted symlink included, never followed).

        Raises ``OSError`` (and whatever ``fill`` raises); the temp file is removed then.
        """
        with self._parent(name, create=True) as (parent, leaf):
            temp, handle = _new_temp(parent, leaf)
            try:
                with os.fdopen(handle, "wb") as sink:
                    fill(sink)
                os.replace(temp, leaf, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=parent)
                raise

    def write_bytes(self, name: str, data: bytes) -> None:
        self.write(name, lambda sink: sink.write(data))

    def copy_in(self, name: str, source: str) -> None:
        """Copy the file at ``source`` (a private path of the worker's, never the flow's) to
        ``name``, streamed."""
        with open(source, "rb") as reader:
            self.write(name, lambda sink: shutil.copyfileobj(reader, sink, 1 << 20))

    def open_append(self, name: str) -> BinaryIO:
        """``name`` opened for appending (created if missing); a symlink there is refused."""
        with self._parent(name, create=True) as (parent, leaf):
            fd = os.open(leaf, _APPEND, 0o644, dir_fd=parent)
        return os.fdopen(fd, "ab")

    def open_read(self, name: str) -> BinaryIO:
        """``name`` opened for reading if it is a regular file (not a link, FIFO or device)."""
        with self._parent(name, create=False) as (parent, leaf):
            fd = os.open(leaf, _READ, dir_fd=parent)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{name} is not a regular file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    # -- reading the directory ---------------------------------------------------------------
    def files(self) -> list[str]:
        """Relative paths of the files below the directory, sorted, hidden subdirectories
        left out. Links are listed as names, never followed."""
        found: list[str] = []
        walk = os.fwalk(".", dir_fd=self.fd, follow_symlinks=False)
        for root, dirs, names, _fd in walk:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                found.append(os.path.normpath(os.path.join(root, name)))
        return found

    def problem(self) -> str | None:
        """What the flow did to its directory, if it is no longer at its path: ``None`` when
        the path still names the directory this handle holds."""
        try:
            here = os.fstat(self.fd)
        except OSError as exc:
            return f"flow directory {self.path}: {exc.strerror or exc}"
        if here.st_nlink == 0:
            return (
                f"the flow removed its directory {self.path}: the plugin's files (result.json, "
                "artifacts) were not written, and not written anywhere else"
            )
        try:
            there = os.lstat(self.path)
        except OSError:
            there = None
        if there is not None and (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
            return None
        now = self.current_path()
        moved = f" (the original is now {now})" if now and now != self.path else ""
        return (
            f"the flow replaced its directory {self.path}{moved}: the plugin's files were "
            "written to the original directory, never through what replaced it"
        )

    def current_path(self) -> str | None:
        """Where the directory is now (Linux: ``/proc/self/fd``), if it can be told."""
        try:
            return os.readlink(f"/proc/self/fd/{self.fd}")
        except OSError:
            return None


def _open_directory(path: str, dir_fd: int | None = None) -> int:
    """Open a directory, never through a link: a link there is ``ELOOP`` with a plain message
    (the kernel says ``ENOTDIR`` for ``O_DIRECTORY | O_NOFOLLOW`` on a link)."""
    try:
        return os.open(path, _DIRECTORY, dir_fd=dir_fd)
    except NotADirectoryError:
        if stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode):
            raise OSError(errno.ELOOP, "is a symbolic link, not followed", path) from None
        raise


def _new_temp(parent: int, leaf: str) -> tuple[str, int]:
    """A new file beside ``leaf``; a name the flow took already (a planted link) is skipped."""
    for _ in range(_TEMP_TRIES):
        temp = f".{leaf[:200]}.{secrets.token_hex(6)}.tmp"
        try:
            return temp, os.open(temp, _NEW_FILE, 0o644, dir_fd=parent)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp name beside {leaf}")


# The directories of the attempts this worker runs, by path (the worker runs one at a time; a
# runner called without a worker, in tests, opens its own).
_OPENED: dict[str, FlowDir] = {}
_LOCK = threading.Lock()


def open_for_attempt(path: str) -> FlowDir:
    """Create and open an attempt's directory before any code of the flow runs, and keep it
    open for the runners until :func:`release`."""
    handle = FlowDir.open(path, create=True)
    with _LOCK:
        old = _OPENED.pop(path, None)
        _OPENED[path] = handle
    if old is not None:
        old.close()
    return handle


def opened(path: str) -> FlowDir | None:
    """The handle :func:`open_for_attempt` keeps for ``path``, if any."""
    with _LOCK:
        return _OPENED.get(path)


def release(path: str) -> None:
    """The attempt is over: close its directory."""
    with _LOCK:
        handle = _OPENED.pop(path, None)
    if handle is not None:
        handle.close()


@contextlib.contextmanager
def attempt_dir(path: str) -> Iterator[FlowDir]:
    """The attempt's open directory at ``path``; without one (a runner called on its own) the
    directory is opened for the block."""
    handle = opened(path)
    if handle is not None:
        yield handle
        return
    handle = FlowDir.open(path)
    try:
        yield handle
    finally:
        handle.close()

"""Bringing a remote flow's files back to the controller's run directory (stdlib only).

A flow on a remote gateway writes its slug directory on that host. When it ends, the worker
lists the directory (symlinks are never followed, only regular files go), keeps within a size
cap, and sends every file in chunks over the channel; the controller checks every name again
before it writes anything, so a worker can never write outside the flow's directory.

Wire format, worker -> controller: ``("file", {"name": str, "data": bytes, "first": bool})``
(:class:`~pytest_runset.gateway.protocol.FileChunk`), all files of an attempt before its
``("finished", result)``.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pytest_runset.gateway.protocol import FileChunk

CHUNK_BYTES = 1 << 20
DEFAULT_MAX_ARTIFACT_MB = 200
# Sent first and never skipped: the report needs it whatever the cap.
FIRST_NAMES = ("result.json",)


class UnsafeName(ValueError):
    """A file name that could write outside the flow directory."""


def check_name(name: object) -> str:
    """``name`` if it is a plain relative ``a/b/c`` path; else :class:`UnsafeName`."""
    if not isinstance(name, str) or not name:
        raise UnsafeName(f"file name {name!r} is not a non-empty string")
    if "\0" in name or "\\" in name:
        raise UnsafeName(f"file name {name!r} holds a NUL or a backslash")
    if name.startswith("/") or os.path.isabs(name):
        raise UnsafeName(f"file name {name!r} is absolute")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeName(f"file name {name!r} has an empty, '.' or '..' part")
    return name


def list_files(flow_dir: str, max_bytes: int) -> tuple[list[tuple[str, int]], list[str]]:
    """Files to send as ``(name, size)`` (within ``max_bytes`` in all) and what is skipped.

    Symlinks (to files or directories) and special files are skipped, never followed.
    ``result.json`` goes first and always; the rest in sorted order until the cap.
    """
    found: list[tuple[str, int]] = []
    skipped: list[str] = []
    for root, dirs, files in os.walk(flow_dir, followlinks=False):
        relative = os.path.relpath(root, flow_dir)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in sorted(dirs):
            if os.path.islink(os.path.join(root, name)):
                skipped.append(f"{prefix}{name} (symlink, not followed)")
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = os.path.join(root, name)
            shown = f"{prefix}{name}"
            try:
                info = os.lstat(path)
                check_name(shown)
            except (OSError, UnsafeName) as exc:
                skipped.append(f"{shown} ({exc})")
                continue
            if stat.S_ISLNK(info.st_mode):
                skipped.append(f"{shown} (symlink, not followed)")
            elif not stat.S_ISREG(info.st_mode):
                skipped.append(f"{shown} (not a regular file)")
            else:
                found.append((shown, info.st_size))
    found.sort(key=lambda entry: (entry[0] not in FIRST_NAMES, entry[0]))
    kept: list[tuple[str, int]] = []
    total = 0
    for name, size in found:
        if name not in FIRST_NAMES and total + size > max_bytes:
            skipped.append(f"{name} ({size} bytes; over the {max_bytes} byte cap)")
            continue
        total += size
        kept.append((name, size))
    return kept, skipped


def chunks(flow_dir: str, name: str) -> Iterator[tuple[bytes, bool]]:
    """The file's content as ``(data, first)`` pieces; an empty file gives one empty piece."""
    path = os.path.join(flow_dir, *check_name(name).split("/"))
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        first = True
        while True:
            data = handle.read(CHUNK_BYTES)
            if data or first:
                yield data, first
            first = False
            if len(data) < CHUNK_BYTES:
                return


def send_files(
    flow_dir: str, names: list[str], send: Callable[[Literal["file"], FileChunk], None]
) -> list[str]:
    """Send the named files of the flow directory in chunks; return those that failed."""
    failed: list[str] = []
    for name in names:
        try:
            for data, first in chunks(flow_dir, name):
                chunk: FileChunk = {"name": name, "data": data, "first": first}
                send("file", chunk)
        except (OSError, UnsafeName) as exc:
            failed.append(f"{name} ({getattr(exc, 'strerror', None) or exc})")
    return failed


def map_paths(data: Any, pairs: list[tuple[str, str]]) -> Any:
    """``data`` with every string's path prefixes replaced (``pairs``: old, new; longest old
    first so that a run directory inside the run-set directory maps as a whole)."""
    ordered = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def one(text: str) -> str:
        for index, (old, _new) in enumerate(ordered):
            if old and old in text:
                head, _, tail = text.partition(old)
                return one(head) + f"\0{index}\0" + one(tail)
        return text

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            text = one(value)
            for index, (_old, new) in enumerate(ordered):
                text = text.replace(f"\0{index}\0", new)
            return text
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, tuple):
            return tuple(walk(item) for item in value)
        if isinstance(value, dict):
            return {walk(key): walk(item) for key, item in value.items()}
        return value

    return walk(data)


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Receiver:
    """The controller's end for one attempt: writes checked names under ``destination``."""

    def __init__(self, destination: str, max_bytes: int) -> None:
        self.destination = destination
        self.max_bytes = max_bytes
        # The flow directory on the remote host (for a helper that fetches what a killed
        # worker could not send).
        self.source: str | None = None
        self.received = 0
        # When the last chunk arrived: a flow whose files are still coming is not stuck.
        self.last_chunk_at: float | None = None
        self.problems: list[str] = []
        self._refused: set[str] = set()

    def write(self, name: object, data: object, first: object) -> None:
        """Write one chunk; a refused one is remembered in :attr:`problems`, never raised."""
        self.last_chunk_at = time.monotonic()
        try:
            checked = check_name(name)
        except UnsafeName as exc:
            self.problems.append(f"refused {exc}")
            return
        if checked in self._refused:
            return
        if not isinstance(data, bytes):
            self._refuse(checked, "its data is not bytes")
            return
        if self.received + len(data) > self.max_bytes + CHUNK_BYTES:
            # The worker keeps within the cap; the slack is result.json, sent whatever the cap.
            self._refuse(checked, f"over the {self.max_bytes} byte cap")
            return
        try:
            self._append(checked, data, bool(first))
        except OSError as exc:
            self._refuse(checked, exc.strerror or str(exc))
            return
        self.received += len(data)

    def _refuse(self, name: str, why: str) -> None:
        self._refused.add(name)
        self.problems.append(f"did not write {name}: {why}")

    def _append(self, name: str, data: bytes, first: bool) -> None:
        parts = name.split("/")
        current = self.destination
        for part in parts[:-1]:
            current = os.path.join(current, part)
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                if os.path.islink(current) or not os.path.isdir(current):
                    raise OSError(f"{'/'.join(parts[:-1])} is not a plain directory") from None
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        flags |= os.O_TRUNC if first else os.O_APPEND
        fd = os.open(os.path.join(current, parts[-1]), flags, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_MAX_ARTIFACT_MB",
    "Receiver",
    "UnsafeName",
    "check_name",
    "chunks",
    "list_files",
    "map_paths",
    "remove_tree",
    "send_files",
]

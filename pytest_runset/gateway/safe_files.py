"""Reading files a user or a flow controls, without letting the file decide how we read it.

A run-set, a spec file or a flow's own report may be a FIFO (which would block the reader
forever), a device such as ``/dev/zero`` (which never ends), huge, or nested deep enough to
exhaust the parser's recursion. :func:`read_regular` reads only regular files, never blocks on
opening and stops at a size cap; :func:`nesting_depth` measures parsed data without recursion.
Stdlib only: used on both sides of the channel.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

# Run-set and spec files: 64 MiB holds hundreds of thousands of flows.
MAX_DEFINITION_BYTES = 64 * 1024 * 1024
# Deeper data than this is never a run-set's or a report's: refused before validation.
MAX_NESTING = 64


class UnsafeFile(OSError):
    """The file is not one we read: not a regular file, or larger than the cap."""


def read_regular(path: str | Path, *, max_bytes: int, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    Raises :class:`UnsafeFile` for a FIFO, socket, device or directory and for a file over
    the cap (read no further than the cap), and ``OSError`` as ``open`` raises it. With
    ``follow_symlinks=False`` a symlink at ``path`` itself is refused (``ELOOP``).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(21, "is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > max_bytes:
            raise UnsafeFile(f"larger than {_size(max_bytes)} ({_size(info.st_size)})")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                # It grew while we read it.
                raise UnsafeFile(f"larger than {_size(max_bytes)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def nesting_depth(data: Any, limit: int = MAX_NESTING) -> int:
    """How deeply lists and dicts nest in ``data`` (a scalar is 0), counted up to ``limit + 1``
    at most: iterative, so no depth of input can exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _size(count: int) -> str:
    return f"{count / (1024 * 1024):.0f} MiB" if count >= 1024 * 1024 else f"{count} bytes"

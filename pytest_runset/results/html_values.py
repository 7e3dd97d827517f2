"""What every part of the HTML report needs: escaping, numbers, and the run's files.

Report values are read defensively (a report of another release, a merged or damaged one may
hold anything), and everything shown is escaped by :func:`e`. :class:`Files` is the page's
only reader of the disk: links from the page to the run's files, small screenshots embedded as
``data:`` URIs, and the last lines of a flow's logs. It reads only inside the run directory,
a bounded amount per file, so a hostile report cannot pull another file into the page.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pytest_runset.model.fsnames import os_name
from pytest_runset.results.numbers import num
from pytest_runset.results.statuses import STATUSES

# Screenshots up to this size are embedded; larger ones are linked.
INLINE_IMAGE_LIMIT = 512 * 1024
# Total embedded image bytes per page, so a run with many failures stays a reasonable file.
INLINE_TOTAL_LIMIT = 8 * 1024 * 1024
# The end of a log read for its last lines: enough for a screen of long lines.
TAIL_BYTES = 64 * 1024
_IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Statuses of a flow that went wrong: such a flow is listed first and always has details.
BAD_STATUSES = frozenset({"failed", "error", "timeout", "interrupted", "xpassed"})


def e(value: object) -> str:
    """Escaped text of any report value (``None`` is empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def secs(value: object) -> str:
    number = num(value)
    return "-" if number is None else f"{number:.2f}s"


def status_class(value: object) -> str:
    """A status usable as a CSS class: one of the known ones, else ``unknown``."""
    return value if isinstance(value, str) and value in STATUSES else "unknown"


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def natural(text: str) -> list[Any]:
    """Sort key so that ``gw2`` comes before ``gw10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def history(flow: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The flow's attempts that are objects, in order."""
    items = flow.get("history")
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def lane(flow: Mapping[str, Any], worker: object = None) -> str | None:
    """The timeline lane of the flow's last attempt (or of ``worker``): ``gw1``, or
    ``shard 2 gw1`` in a merged report."""
    worker = flow.get("worker") if worker is None else worker
    if worker in (None, ""):
        return None
    shard = flow.get("shard")
    return f"shard {shard} {worker}" if shard is not None else str(worker)


class Files:
    """The run's files as the page sees them: links, embedded images, the ends of logs.

    Report paths are relative to ``run_dir``; links are relative to ``out_dir``, where the page
    is written.
    """

    def __init__(self, run_dir: Path, out_dir: Path) -> None:
        self.run_dir = run_dir
        self.out_dir = out_dir
        self.embedded = 0

    def href(self, path: str) -> str:
        target = self.run_dir / path
        try:
            relative = os.path.relpath(target, self.out_dir)
        except ValueError:  # another drive on Windows: an absolute file URL still works
            return Path(os.path.abspath(target)).as_uri()
        # Quoting turns ':' into '%3A', so no report value can become a javascript: URL.
        return quote(relative.replace(os.sep, "/"), safe="/")

    def absolute(self, path: str) -> str:
        """The file's absolute path, for a command to copy (``python -m playwright show-trace``)."""
        return os.path.abspath(self.run_dir / path)

    def _inside(self, path: str) -> Path | None:
        """The file at ``path`` if it resolves inside the run directory, else ``None`` (never
        read a file from outside the run: a hostile report's ``../`` or a planted link)."""
        try:
            target = (self.run_dir / os_name(path)).resolve()
            if not target.is_relative_to(self.run_dir.resolve()) or not target.is_file():
                return None
        except (OSError, ValueError):
            return None
        return target

    def image(self, path: str) -> str | None:
        """A ``data:`` URI of a small PNG/JPEG artifact, or ``None`` (link it instead)."""
        if not path.lower().endswith(_IMAGE_SUFFIXES):
            return None
        target = self._inside(path)
        if target is None:
            return None
        try:
            size = target.stat().st_size
            if size > INLINE_IMAGE_LIMIT or self.embedded + size > INLINE_TOTAL_LIMIT:
                return None
            data = target.read_bytes()
        except OSError:
            return None
        mime = next((m for magic, m in _IMAGE_TYPES.items() if data.startswith(magic)), None)
        if mime is None:
            return None
        self.embedded += len(data)
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def tail(self, path: object, lines: int = 20) -> list[str] | None:
        """The last ``lines`` lines of a text file (the logs are already masked on disk), or
        ``None`` when there is no such file to read."""
        if not isinstance(path, str) or not path:
            return None
        target = self._inside(path)
        if target is None:
            return None
        try:
            with target.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - TAIL_BYTES))
                data = handle.read(TAIL_BYTES)
        except OSError:
            return None
        text = data.decode("utf-8", "replace").splitlines()
        if size > TAIL_BYTES and text:
            text = text[1:]  # the first line read is probably cut
        return text[-lines:]

"""The live "2 running / 5 queued / 3 of 10 done" status line, on interactive terminals only.

The run loop tells :class:`LiveStatus` the counts whenever flows start or finish, and hides it
before anything else may write to the terminal. The status is drawn after whatever the current
line holds (pytest's dots, or nothing at the start of a line) and erased again with terminal
escapes, without the reporter's writer knowing: pytest's own idea of the line stays true, so
its output is never corrupted. On a stream that is not a TTY (CI logs, pipes, files) nothing
is drawn, ever: such logs must hold only pytest's lines.

Everything here runs on pytest's main thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

# Erase from the cursor to the end of the line.
_ERASE_TO_END = "\x1b[K"
# The narrowest status worth drawing; on a crowded line nothing is drawn rather than a stub.
_MIN_WIDTH = 12
INI_NAME = "runset_live_status"


@dataclass(frozen=True)
class Counts:
    """Where the run stands: flows on a worker now, waiting to start, and ended."""

    running: int
    queued: int
    done: int
    total: int


def status_texts(counts: Counts) -> list[str]:
    """The status, longest form first; the widest that fits the line is drawn."""
    short = f"{counts.running} running / {counts.queued} queued"
    return [
        f"runset: {short} / {counts.done} of {counts.total} done",
        f"{short} / {counts.done}/{counts.total} done",
        short,
    ]


class LiveStatus:
    """One status drawn at the end of the terminal's current line, and erased on request.

    ``write`` puts raw text on the terminal (unseen by the reporter's line tracking),
    ``column`` says how wide the reporter's current line is and ``width`` how wide the screen.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        column: Callable[[], int],
        width: Callable[[], int],
    ) -> None:
        self._write = write
        self._column = column
        self._width = width
        # What is on the screen now ("" when nothing), and where it started.
        self._shown = ""
        self._at_column = 0
        self._last: Counts | None = None

    @property
    def visible(self) -> bool:
        return bool(self._shown)

    def show(self, counts: Counts) -> None:
        """Draw (or redraw) the status for ``counts``; a no-op when the screen has it already."""
        column = self._column()
        if self._shown and counts == self._last and column == self._at_column:
            return
        self._last = counts
        text = self._fit(counts, column)
        erase = self._erasure()
        if not text:
            if erase:
                self._write(erase)
                self._shown = ""
            return
        self._write(erase + text + _ERASE_TO_END)
        self._shown = text
        self._at_column = column

    def hide(self) -> None:
        """Erase the status so the cursor is back where the reporter left it."""
        erase = self._erasure()
        if erase:
            self._write(erase)
            self._shown = ""

    def _erasure(self) -> str:
        if not self._shown:
            return ""
        if self._at_column == 0:
            return "\r" + _ERASE_TO_END
        # Back over the status only: the reporter's text before it stays on the screen.
        return f"\x1b[{len(self._shown)}D{_ERASE_TO_END}"

    def _fit(self, counts: Counts, column: int) -> str:
        # One column spare: a line filled to the last column wraps on some terminals.
        room = self._width() - column - 1
        prefix = "  " if column else ""
        for text in status_texts(counts):
            candidate = prefix + text
            if len(candidate) <= room and len(text) >= _MIN_WIDTH:
                return candidate
        return ""


def live_status(config: pytest.Config) -> LiveStatus | None:
    """A :class:`LiveStatus` on pytest's terminal, or None where none may be drawn.

    None unless the terminal reporter writes to a TTY that understands escapes and the ini
    option ``runset_live_status`` is left on.
    """
    if not config.getini(INI_NAME):
        return None
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None or not _is_tty(terminal) or os.environ.get("TERM") == "dumb":
        return None

    def write(text: str) -> None:
        terminal.write_raw(text, flush=True)

    def column() -> int:
        return int(getattr(terminal, "_width_of_current_line", 0))

    def width() -> int:
        return int(getattr(terminal, "_screen_width", 80))

    return LiveStatus(write, column=column, width=width)


def _is_tty(terminal: Any) -> bool:
    isatty = getattr(terminal, "isatty", False)
    return bool(isatty() if callable(isatty) else isatty)

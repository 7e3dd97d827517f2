"""The live "2 running / 5 queued / 3 of 10 done / login 12s, checkout 8s" status line, on
interactive terminals only.

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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_runset.engine.state import FlowState
from pytest_runset.session.terminal_plugins import live_line_allowed

# Erase from the cursor to the end of the line.
_ERASE_TO_END = "\x1b[K"
# The narrowest status worth drawing; on a crowded line nothing is drawn rather than a stub.
_MIN_WIDTH = 12
INI_NAME = "runset_live_status"
# A flow's name in the status is cut to this many columns: one long name must not push out the
# others (or the whole list) on an ordinary terminal.
_NAME_WIDTH = 24


@dataclass(frozen=True)
class Counts:
    """Where the run stands: flows on a worker now, waiting to start, and ended."""

    running: int
    queued: int
    done: int
    total: int
    # Running flows as (name, whole seconds on their worker), the longest-running first. Whole
    # seconds: the status is redrawn when a count changes, at most once a second for these.
    longest: tuple[tuple[str, int], ...] = ()


def status_texts(counts: Counts) -> list[str]:
    """The status, longest form first; the widest that fits the line is drawn.

    The counts come first and stay where they are while the names after them change; as the
    line gets narrower the names go first (the shortest-running first), then the counts shrink.
    """
    short = f"{counts.running} running / {counts.queued} queued"
    full = f"runset: {short} / {counts.done} of {counts.total} done"
    named = []
    for shown in range(len(counts.longest), 0, -1):
        names = ", ".join(
            f"{_shown_name(name)} {elapsed_text(seconds)}"
            for name, seconds in counts.longest[:shown]
        )
        more = ", \u2026" if shown < counts.running else ""
        named.append(f"{full} / {names}{more}")
    return [*named, full, f"{short} / {counts.done}/{counts.total} done", short]


def running_counts(running: list[FlowState], queued: int, done: int, total: int) -> Counts:
    """The counts of the run loop now, with its running flows' names and times."""
    return Counts(len(running), queued, done, total, longest_running(running, time.monotonic()))


def longest_running(running: Iterable[FlowState], now: float) -> tuple[tuple[str, int], ...]:
    """``Counts.longest`` for the flows on a worker now (``now`` is ``time.monotonic()``)."""
    flows = [(state.flow.name, int(max(0.0, now - state.dispatched_at))) for state in running]
    return tuple(sorted(flows, key=lambda flow: (-flow[1], flow[0])))


def elapsed_text(seconds: int) -> str:
    """``12s``, ``3m05s``, ``2h01m``: short enough for a status line."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _shown_name(name: str) -> str:
    # A flow's name is the user's text: no control character (an escape sequence would be
    # obeyed by the terminal) reaches it.
    text = "".join(char if char.isprintable() else "?" for char in name)
    return text if len(text) <= _NAME_WIDTH else text[: _NAME_WIDTH - 1] + "\u2026"


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
    if not config.getini(INI_NAME) or not live_line_allowed(config):
        # pytest-sugar (or another redrawing reporter), or a flow in the debugger.
        return None
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None or not _is_tty(terminal) or os.environ.get("TERM") == "dumb":
        return None

    alive = [True]

    def write(text: str) -> None:
        # A terminal that hung up (closed, ssh dropped) fails every write with EIO: the live
        # line then goes quiet, and the run goes on to write its report.
        if not alive[0]:
            return
        try:
            terminal.write_raw(text, flush=True)
        except OSError:
            alive[0] = False

    def column() -> int:
        return int(getattr(terminal, "_width_of_current_line", 0))

    def width() -> int:
        return int(getattr(terminal, "_screen_width", 80))

    return LiveStatus(write, column=column, width=width)


def _is_tty(terminal: Any) -> bool:
    isatty = getattr(terminal, "isatty", False)
    return bool(isatty() if callable(isatty) else isatty)

"""Ctrl-C and SIGTERM while flows run: when they may interrupt, and when they must wait.

Everything here runs on the main thread (signal handlers only exist there).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

# SIGHUP (the terminal closed, the ssh connection dropped) is handled like SIGTERM: the run
# stops in order and writes its report rather than dying with its services orphaned.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class InterruptGate:
    """SIGINT, SIGTERM and SIGHUP as ``KeyboardInterrupt``, but never inside a critical section.

    Outside one (an ordinary test running, the loop waiting) the interrupt is raised at once;
    inside one it is remembered and raised when the section ends.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = True
            return
        raise KeyboardInterrupt

    def installed(self) -> contextlib.AbstractContextManager[None]:
        return _interrupt_handler(self._handler)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending:
            self._pending = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_handler(handler: Any) -> Iterator[None]:
    """``handler`` for SIGINT, SIGTERM and SIGHUP within the block, then the previous ones.

    Outside the main thread signals cannot be handled, and the block runs unchanged.
    """
    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in HANDLED_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def sigint_ignored() -> contextlib.AbstractContextManager[None]:
    """A second Ctrl-C must not abandon the clean-up that keeps processes from leaking."""
    return _interrupt_handler(signal.SIG_IGN)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a run is being set up; deliver them right after.

    Between creating run directories and entering the loop, an interrupt would leave a run
    without a report. Delivered at the end of this block instead, it reaches the loop's
    normal interrupt handling.
    """
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    with _interrupt_handler(hold):
        yield
    if received:
        raise KeyboardInterrupt

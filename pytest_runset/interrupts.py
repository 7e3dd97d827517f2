"""Ctrl-C and SIGTERM while flows run: when they may interrupt, and when they must wait.

Everything here runs on the main thread (signal handlers only exist there).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class InterruptGate:
    """SIGINT and SIGTERM as ``KeyboardInterrupt``, but never inside a critical section.

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

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = signal.signal(signal.SIGINT, self._handler)
            previous_term = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)

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
def sigint_ignored() -> Iterator[None]:
    """A second Ctrl-C must not abandon the clean-up that keeps processes from leaking."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


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

    try:
        previous = signal.signal(signal.SIGINT, hold)
        previous_term = signal.signal(signal.SIGTERM, hold)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    if received:
        raise KeyboardInterrupt

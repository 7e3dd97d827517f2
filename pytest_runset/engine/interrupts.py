"""Ctrl-C and SIGTERM while flows run: when they may interrupt, and when they must wait.

Everything here runs on the main thread (signal handlers only exist there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any

# SIGHUP (the terminal closed, the ssh connection dropped) is handled like SIGTERM: the run
# stops in order and writes its report rather than dying with its services orphaned.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def leave_dead_terminal(extra_fds: Iterable[int] = ()) -> None:
    """SIGHUP: the terminal is gone (closed, ssh dropped), and every later write to it fails
    with EIO, which would cost the run its report. Output that went to the terminal goes
    nowhere from now on; the report, journal and logs are files and are all still written."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        null = os.fstat(devnull)
        for fd in (1, 2, *extra_fds):
            with contextlib.suppress(OSError):
                # isatty() is False on a terminal that hung up (its ioctl fails with EIO):
                # any character device but /dev/null itself is taken for the terminal.
                info = os.fstat(fd)
                if stat.S_ISCHR(info.st_mode) and not os.path.samestat(info, null):
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class InterruptGate:
    """SIGINT, SIGTERM and SIGHUP as ``KeyboardInterrupt``, but never inside a critical section.

    Outside one (an ordinary test running, the loop waiting) the interrupt is raised at once;
    inside one it is remembered and raised when the section ends.
    """

    def __init__(self, on_hangup: Callable[[], None] = leave_dead_terminal) -> None:
        self._depth = 0
        self._pending = False
        # SIGHUP: the terminal is gone; the caller silences whatever still writes to it.
        self._on_hangup = on_hangup

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._on_hangup()
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
        if signum == signal.SIGHUP:
            leave_dead_terminal()
        received.append(signum)

    with _interrupt_handler(hold):
        yield
    if received:
        raise KeyboardInterrupt

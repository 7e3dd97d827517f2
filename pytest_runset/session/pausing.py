"""Pause, unpause and stop applied to the own pool's run loop (requests from
:mod:`pytest_runset.session.live_control`, and Ctrl-Z / ``fg`` on pytest's terminal).

Pausing tells every busy worker to freeze its flow's processes and stop its flow's clock,
stops dispatching and stops the controller's own clocks (backstops, global deadline). Ctrl-Z
(SIGTSTP) pauses the flows first and then stops pytest the way the shell expects; ``fg``
(SIGCONT) unpauses. A controller stopped by other means (SIGSTOP, a debugger) finds, when it
runs again, that its workers were not late: their backstops move by the time it lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Literal

from pytest_runset.engine.pool import Pool
from pytest_runset.engine.state import FlowState
from pytest_runset.engine.supervision import AttemptWatch, Supervision
from pytest_runset.session.live_control import LiveStatus, RunControl, StopMode
from pytest_runset.session.progress import Counts

# A loop that blocks at most this long and still saw no tick for longer was itself stopped.
_STALL_S = 2.0


class PauseDriver:
    def __init__(
        self,
        control: RunControl,
        pool: Pool,
        supervision: Supervision,
        busy: Callable[[], list[tuple[int, AttemptWatch | None]]],
        on_paused_s: Callable[[float], None],
    ) -> None:
        self.control = control
        self.pool = pool
        self.supervision = supervision
        self.busy = busy
        self.on_paused_s = on_paused_s
        self._stop_self = False
        self._last_tick: float | None = None
        # Called just before pytest stops itself on Ctrl-Z: `status` must already say paused.
        self.before_stopping: Callable[[], None] = lambda: None

    @property
    def paused(self) -> bool:
        return self.control.paused

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTSTP and SIGCONT handlers for the loop's lifetime (main thread only)."""

        def tstp(signum: int, frame: FrameType | None) -> None:
            # Only flags: the loop acts within its next tick (at most a quarter second).
            self.control.pause_from_signal(True)
            self._stop_self = True

        def cont(signum: int, frame: FrameType | None) -> None:
            self.control.pause_from_signal(False)

        try:
            before = (signal.signal(signal.SIGTSTP, tstp), signal.signal(signal.SIGCONT, cont))
        except ValueError:
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGTSTP, before[0])
            signal.signal(signal.SIGCONT, before[1])

    def apply(self) -> StopMode | None:
        """Bring workers and clocks in line with the requests; return a stop request."""
        now = time.monotonic()
        self.forgive_own_stall(now)
        was = self.control.paused
        self.control.poll(now)
        if self.control.paused != was:
            self._switch(self.control.paused, now)
        if self._stop_self:
            self._stop_self = False
            self.before_stopping()
            # The flows are frozen: now stop as the shell asked. `fg` continues here.
            os.kill(os.getpid(), signal.SIGSTOP)
            self._last_tick = time.monotonic()
        return self.control.stop

    def _switch(self, paused: bool, now: float) -> None:
        kind = "pause" if paused else "unpause"
        busy = self.busy()
        for slot, _watch in busy:
            self.pool.send(slot, kind, {})
        if paused:
            self.supervision.pause(now)
        else:
            self.supervision.unpause(now, [watch for _, watch in busy if watch is not None])
        self.on_paused_s(self.control.total_paused_s(now))

    def forgive_own_stall(self, now: float | None = None) -> None:
        """Called each tick and right before backstops are checked: after a SIGCONT the
        loop may wake before the channel threads delivered what the workers sent."""
        now = time.monotonic() if now is None else now
        last, self._last_tick = self._last_tick, now
        if last is None or now - last < _STALL_S or self.supervision.paused:
            return
        self.supervision.forgive(now - last, [w for _, w in self.busy() if w is not None])

    def publish(
        self,
        run_id: str,
        counts: Counts,
        running: list[FlowState],
        *,
        final: bool,
        force: bool = False,
    ) -> None:
        """``status.json`` for ``pytest-runset status`` (throttled; the final one always)."""
        status = status_of(run_id, counts, running, self, final=final)
        self.control.write_status(status, force=final or force)

    def finish(self) -> float:
        """The run ends: thaw what is frozen; return the total time spent paused."""
        if self.control.paused:
            self.control.set_paused(False)
            self._switch(False, time.monotonic())
        self.control.close()
        return self.control.total_paused_s()


def status_of(
    run_id: str, counts: Counts, running: list[FlowState], live: PauseDriver, *, final: bool
) -> LiveStatus:
    """``status.json`` of the loop as it is now."""
    now = time.monotonic()
    state: Literal["running", "paused", "draining", "stopping", "finished"] = "running"
    if final:
        state = "finished"
    elif live.paused:
        state = "paused"
    elif live.control.stop is not None:
        state = "draining" if live.control.stop == "drain" else "stopping"
    return {
        "run_id": run_id,
        "pid": os.getpid(),
        "state": state,
        "running": [
            {
                "name": flow.flow.name,
                "worker": flow.worker_id or "",
                "elapsed_s": round(max(0.0, now - flow.dispatched_at), 1),
            }
            for flow in running
        ],
        "queued": counts.queued,
        "done": counts.done,
        "total": counts.total,
        "paused_s": round(live.control.total_paused_s(now), 3),
        "updated_at": time.time(),
    }

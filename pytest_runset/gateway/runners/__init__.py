"""Flow runners: one module per flow kind, run inside a worker gateway (stdlib only).

A runner is a function ``run(spec: AttemptSpec, control: Control) -> AttemptResult`` (see
:mod:`pytest_runset.gateway.protocol`). ``spec`` is the plain-data flow attempt the controller
sent (see :mod:`pytest_runset.gateway.worker`), ``control`` tells the runner when to stop early
(:class:`Control`). The returned result has at least ``status``, ``message`` and
``exit_code``; the worker adds timing, the cookie sweep and ``result.json``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pytest_runset.gateway.protocol import CancelStatus


class Control:
    """Deadline and cancellation of one flow attempt, shared by the worker and the runner."""

    def __init__(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self.wake = threading.Event()
        self.cancel_reason: str | None = None
        self.cancel_status: CancelStatus = "interrupted"
        self.grace_cap: float | None = None
        # Set by the worker's containment: moves each process the flow starts into the
        # attempt's group between fork and exec (``subprocess.Popen(preexec_fn=...)``).
        self.preexec: Callable[[], None] | None = None
        # While paused the clock of the attempt stands still (pytest-runset pause, Ctrl-Z).
        self.paused_since: float | None = None
        self.paused_s = 0.0

    def cancel(
        self, reason: str, grace_cap: float | None = None, status: CancelStatus = "interrupted"
    ) -> None:
        """Ask the runner to stop now (interrupt, controller gone).

        ``grace_cap`` shortens the SIGTERM grace when there is no time to be polite.
        """
        if self.cancel_reason is None:
            self.cancel_reason = reason
            # "timeout" when the run's global timeout stops the flow, else "interrupted".
            self.cancel_status = status
        if grace_cap is not None:
            self.grace_cap = grace_cap
        self.wake.set()

    def kill_grace(self, configured: float) -> float:
        return configured if self.grace_cap is None else min(configured, self.grace_cap)

    def remaining(self) -> float:
        now = self.paused_since if self.paused_since is not None else time.monotonic()
        return max(0.0, self.deadline - now)

    def pause(self) -> None:
        if self.paused_since is None:
            self.paused_since = time.monotonic()

    def unpause(self) -> None:
        since, self.paused_since = self.paused_since, None
        if since is not None:
            paused = time.monotonic() - since
            self.deadline += paused
            self.paused_s += paused


RUNNERS = {
    "command": "pytest_runset.gateway.runners.command",
    "steps": "pytest_runset.gateway.runners.steps",
    "callable": "pytest_runset.gateway.runners.python",
}


def shutdown_runners() -> None:
    """The worker stops: let runners that keep state between flows (the warm browser) close
    it. Only modules already imported are asked, so a worker that ran no browser flow never
    imports Playwright here. Never raises."""
    import sys

    module = sys.modules.get("pytest_runset.gateway.runners.browser_host")
    if module is not None:
        try:
            module.shutdown()
        except Exception:
            pass
    # Sign-in states this worker kept on a remote host go with it (persona_login.py).
    login = sys.modules.get("pytest_runset.gateway.runners.persona_login")
    if login is not None:
        try:
            login.forget_host_dirs()
        except Exception:
            pass

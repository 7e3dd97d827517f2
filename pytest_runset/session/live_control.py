"""Controlling a live run from another terminal: status, pause, unpause, stop.

The channel is a ``control/`` directory inside the run directory, which is mode 0700: only
the run's owner can reach it. Requests are states, not messages, so that every process of
the run (the controller, and each pytest-xdist worker) can read them at its own pace:

- ``control/paused`` exists: the run is paused (``pytest-runset pause``); removed on unpause;
- ``control/stop`` holds ``now`` or ``drain`` (``pytest-runset stop [--drain]``).

The controller answers in ``status.json`` (running flows, queued and done counts, paused
state), rewritten atomically at most twice a second while the run lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

CONTROL_DIR = "control"
PAUSED_NAME = "paused"
STOP_NAME = "stop"
STATUS_NAME = "status.json"
_POLL_S = 0.1
_STATUS_EVERY_S = 0.5

StopMode = Literal["now", "drain"]


class RunningFlow(TypedDict):
    name: str
    worker: str
    elapsed_s: float


class LiveStatus(TypedDict):
    """``status.json``: what a live run is doing."""

    run_id: str
    pid: int
    state: Literal["running", "paused", "draining", "stopping", "finished"]
    running: list[RunningFlow]
    queued: int
    done: int
    total: int
    paused_s: float
    updated_at: float
    # "xdist": the run's flows are distributed by pytest-xdist, which cannot be paused.
    controller: NotRequired[Literal["own", "xdist"]]


XDIST_REFUSAL = (
    "the run uses pytest-xdist's -n, which cannot drain (finish running flows, start none): "
    "use 'stop' without --drain, or run with pytest-runset's own workers (--runset-workers N)"
)


def control_dir(run_dir: Path) -> Path:
    return run_dir / CONTROL_DIR


def requested_pause(run_dir: Path) -> bool:
    return os.path.lexists(control_dir(run_dir) / PAUSED_NAME)


def requested_stop(run_dir: Path) -> StopMode | None:
    try:
        text = (control_dir(run_dir) / STOP_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return "drain" if text == "drain" else "now"


def _make_dir(run_dir: Path) -> Path:
    directory = control_dir(run_dir)
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def request(run_dir: Path, command: Literal["pause", "unpause", "stop"], drain: bool) -> None:
    """What ``pytest-runset pause|unpause|stop`` do. Raises OSError."""
    directory = _make_dir(run_dir)
    if command == "pause":
        (directory / PAUSED_NAME).touch(mode=0o600)
    elif command == "unpause":
        (directory / PAUSED_NAME).unlink(missing_ok=True)
    else:
        tmp = directory / f".{STOP_NAME}.{os.getpid()}"
        tmp.write_text("drain\n" if drain else "now\n", encoding="ascii")
        os.replace(tmp, directory / STOP_NAME)
        # A paused run that is told to stop must be able to.
        (directory / PAUSED_NAME).unlink(missing_ok=True)


def read_status(run_dir: Path) -> LiveStatus | None:
    try:
        data = json.loads((run_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None  # type: ignore[return-value]


def controller_alive(status: LiveStatus) -> bool:
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return status.get("state") != "finished"


@dataclass
class RunControl:
    """The controller's side: polls the requests, keeps the pause clock, writes the status."""

    run_dirs: list[Path]
    run_id: str
    paused: bool = False
    stop: StopMode | None = None
    paused_since: float | None = None
    paused_s: float = 0.0
    _polled_at: float = 0.0
    _status_at: float = 0.0
    _signal_pause: bool = field(default=False)

    def poll(self, now: float | None = None) -> None:
        """Read the requests (at most every 0.1 s)."""
        now = time.monotonic() if now is None else now
        if now - self._polled_at < _POLL_S:
            return
        self._polled_at = now
        wanted = self._signal_pause or any(requested_pause(d) for d in self.run_dirs)
        if wanted != self.paused:
            self.set_paused(wanted, now)
        for directory in self.run_dirs:
            mode = requested_stop(directory)
            if mode == "now" or (mode == "drain" and self.stop is None):
                self.stop = mode

    def set_paused(self, paused: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.paused = paused
        if paused:
            self.paused_since = now
        elif self.paused_since is not None:
            self.paused_s += now - self.paused_since
            self.paused_since = None

    def pause_from_signal(self, paused: bool) -> None:
        """Ctrl-Z (SIGTSTP) pauses, ``fg`` (SIGCONT) unpauses, like the files do."""
        self._signal_pause = paused
        self._polled_at = 0.0

    def total_paused_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return self.paused_s + (now - self.paused_since if self.paused_since else 0.0)

    def write_status(self, status: LiveStatus, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < _STATUS_EVERY_S:
            return
        self._status_at = now
        text = json.dumps(status)
        for directory in self.run_dirs:
            tmp = directory / f".{STATUS_NAME}.{os.getpid()}.tmp"
            try:
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, directory / STATUS_NAME)
            except OSError:
                # A full disk: no half-written temporary file is left in the run directory.
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def close(self) -> None:
        """The run is over: the requests are spent."""
        for directory in self.run_dirs:
            with contextlib.suppress(OSError):
                for name in (PAUSED_NAME, STOP_NAME):
                    (control_dir(directory) / name).unlink(missing_ok=True)


def control_run(run_dir: Path, command: str, *, drain: bool = False) -> tuple[list[str], int]:
    """What ``pytest-runset status|pause|unpause|stop RUN`` print and exit with.

    Raises ValueError with a one-line message for a run that cannot be controlled.
    """
    try:
        info = os.stat(run_dir)
    except OSError as exc:
        raise ValueError(f"{run_dir}: no such run ({exc.strerror})") from None
    if info.st_uid != os.getuid():
        raise ValueError(f"{run_dir}: belongs to uid {info.st_uid}; only its owner controls it")
    status = read_status(run_dir)
    live = status is not None and controller_alive(status)
    if command == "status":
        return (_status_lines(status) if live and status is not None else []), 0
    if not live:
        raise ValueError(f"{run_dir}: the run is not running (nothing to {command})")
    if command == "stop" and drain and status is not None and status.get("controller") == "xdist":
        raise ValueError(f"{run_dir}: {XDIST_REFUSAL}")
    try:
        request(run_dir, command, drain)  # type: ignore[arg-type]
    except OSError as exc:
        raise ValueError(f"{run_dir}: cannot {command}: {exc.strerror or exc}") from None
    done = {
        "pause": "pausing",
        "unpause": "unpausing",
        "stop": "draining (running flows finish, nothing new starts)" if drain else "stopping",
    }[command]
    return [f"run {status['run_id'] if status else run_dir.name}: {done}"], 0


def _status_lines(status: LiveStatus) -> list[str]:
    paused = f", paused {status.get('paused_s', 0):.0f}s in all" if status.get("paused_s") else ""
    lines = [
        f"run {status.get('run_id')}: {status.get('state')}{paused}",
        f"running {len(status.get('running', []))}, queued {status.get('queued')}, "
        f"done {status.get('done')} of {status.get('total')}",
    ]
    for flow in status.get("running", []):
        lines.append(f"  {flow['worker']:<8} {flow['elapsed_s']:>8.1f}s  {flow['name']}")
    return lines


def xdist_status(
    run_id: str, live: RunControl, running: list[str], done: int, total: int, final: bool
) -> LiveStatus:
    """``status.json`` of a run under pytest-xdist (its controller knows names, not workers)."""
    return {
        "run_id": run_id,
        "pid": os.getpid(),
        "state": "finished" if final else "paused" if live.paused else "running",
        "paused_s": round(live.total_paused_s(), 3),
        "running": [{"name": name, "worker": "", "elapsed_s": 0.0} for name in running],
        "queued": max(0, total - done - len(running)),
        "done": done,
        "total": total,
        "updated_at": time.time(),
        "controller": "xdist",
    }

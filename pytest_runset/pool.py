"""The controller's pool of execnet gateways, one flow in flight per gateway.

Gateways start (and are replaced) in background threads; every channel callback only puts an
:class:`Event` on a queue, and never raises. The run loop on the main thread consumes the
queue, so pytest hooks are only ever called from there.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import execnet

from . import worker as worker_module


@dataclass(frozen=True)
class Event:
    """Something a gateway (or its starter thread) reported.

    ``kind`` is ``ready``, ``started``, ``finished``, ``died`` or ``spawn_failed``;
    ``generation`` tells events of a replaced gateway apart from its successor's.
    """

    slot: int
    generation: int
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerHandle:
    slot: int
    generation: int
    worker_id: str
    gateway: Any = None
    channel: Any = None
    pid: int | None = None
    host: str | None = None
    ready: bool = False


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


class Pool:
    """``size`` local popen gateways (or gateways from explicit execnet ``specs``)."""

    def __init__(self, size: int, specs: list[str] | None = None) -> None:
        self.size = size
        self.specs = specs or ["popen"] * size
        self.events: queue.Queue[Event] = queue.Queue()
        self.group = execnet.Group()
        self.workers: dict[int, WorkerHandle] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._generation = 0
        self._closed = False

    # -- starting ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start every slot's gateway in parallel; readiness arrives as ``ready`` events."""
        for slot in range(self.size):
            self.spawn(slot)

    def spawn(self, slot: int) -> WorkerHandle:
        with self._lock:
            self._generation += 1
            worker_id = f"gw{self._counter}"
            self._counter += 1
            handle = WorkerHandle(slot=slot, generation=self._generation, worker_id=worker_id)
            self.workers[slot] = handle
        threading.Thread(
            target=self._start_gateway, args=(handle,), name=f"runset-spawn-{slot}", daemon=True
        ).start()
        return handle

    def _start_gateway(self, handle: WorkerHandle) -> None:
        try:
            spec = f"{self.specs[handle.slot % len(self.specs)]}//id={handle.worker_id}"
            gateway = self.group.makegateway(spec)
            channel = gateway.remote_exec(worker_module)
            handle.gateway = gateway
            handle.channel = channel
            channel.send({"sys_path": [_package_root()]})
            channel.setcallback(
                lambda message: self._on_message(handle, message),
                endmarker=_END,
            )
        except BaseException as exc:
            self.events.put(
                Event(handle.slot, handle.generation, "spawn_failed", {"error": repr(exc)})
            )

    def _on_message(self, handle: WorkerHandle, message: Any) -> None:
        # Runs on execnet's receiver thread: translate and enqueue, nothing else.
        try:
            if message is _END:
                self.events.put(Event(handle.slot, handle.generation, "died", {}))
                return
            kind, data = message
            if kind == "ready":
                handle.pid = data.get("pid")
                handle.host = data.get("host")
                handle.ready = True
            self.events.put(Event(handle.slot, handle.generation, str(kind), dict(data)))
        except BaseException as exc:
            self.events.put(
                Event(handle.slot, handle.generation, "died", {"error": f"bad message: {exc!r}"})
            )

    # -- talking to workers ------------------------------------------------------------------
    def current(self, slot: int, generation: int) -> bool:
        handle = self.workers.get(slot)
        return handle is not None and handle.generation == generation

    def send(self, slot: int, event: str, data: dict[str, Any]) -> bool:
        handle = self.workers.get(slot)
        if handle is None or handle.channel is None:
            return False
        try:
            handle.channel.send((event, data))
        except Exception:
            return False
        return True

    def kill(self, slot: int) -> None:
        """Kill a slot's gateway process group outright (unresponsive or crashed worker)."""
        handle = self.workers.get(slot)
        if handle is None:
            return
        if handle.pid is not None and handle.pid != os.getpid():
            with contextlib.suppress(OSError):
                os.killpg(handle.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(handle.pid, signal.SIGKILL)
        gateway = handle.gateway
        if gateway is not None:
            threading.Thread(target=_quiet_exit, args=(gateway,), daemon=True).start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every gateway: ask politely, then kill what is left."""
        if self._closed:
            return
        self._closed = True
        for slot in list(self.workers):
            self.send(slot, "stop", {})
        with contextlib.suppress(Exception):
            self.group.terminate(timeout=timeout)
        for handle in self.workers.values():
            if handle.pid is not None:
                with contextlib.suppress(OSError):
                    os.killpg(handle.pid, signal.SIGKILL)


def _quiet_exit(gateway: Any) -> None:
    with contextlib.suppress(BaseException):
        gateway.exit()


class _EndMarker:
    def __repr__(self) -> str:
        return "<channel closed>"


_END = _EndMarker()

__all__ = ["Event", "Pool", "WorkerHandle"]

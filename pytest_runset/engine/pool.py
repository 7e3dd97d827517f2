"""The controller's pool of execnet gateways, one flow in flight per gateway.

Gateways start (and are replaced) in background threads; every channel callback only puts an
:class:`Event` on a queue, and never raises. The run loop on the main thread consumes the
queue, so pytest hooks are only ever called from there.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import execnet

from pytest_runset import __version__
from pytest_runset.gateway import proctree
from pytest_runset.gateway import worker as worker_module
from pytest_runset.gateway.transfer import Receiver
from pytest_runset.model.fsnames import as_text, utf8_file_system
from pytest_runset.model.txspec import GatewaySpec, ProxySpec


@dataclass(frozen=True)
class Event:
    """Something a gateway (or its starter thread) reported.

    ``kind`` is ``ready``, ``refused`` (version mismatch), ``started``, ``finished``, ``died``
    or ``spawn_failed``;
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
    # Set for gateways on another host: where that host keeps flow dirs while they run, and
    # the receiver of the running attempt's files.
    remote: bool = False
    scratch: str | None = None
    receiver: Receiver | None = None


def local_popen_spec() -> str:
    """The execnet spec of a gateway on this machine: ``popen``, in Python's UTF-8 mode when
    this interpreter is not in it.

    Under a C or POSIX locale with ``PYTHONUTF8=0``, Python encodes file names, arguments and
    environment values as ASCII, so a flow named "café" could not even be started. The worker
    speaks UTF-8 whatever the locale (the run-set file is UTF-8); the flows it starts still get
    the user's locale, since ``-X utf8`` is not inherited.
    """
    if utf8_file_system():
        return "popen"
    return f"popen//python={shlex.quote(sys.executable)} -X utf8"


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


class Pool:
    """``size`` local popen gateways, or the gateways of ``--runset-tx`` specs."""

    def __init__(
        self,
        size: int,
        specs: list[GatewaySpec] | None = None,
        proxies: dict[str, ProxySpec] | None = None,
    ) -> None:
        self.size = size
        self.specs = specs or [GatewaySpec(local_popen_spec(), None, False)] * size
        self.proxies = proxies or {}
        self.events: queue.Queue[Event] = queue.Queue()
        self.group = execnet.Group()
        self.workers: dict[int, WorkerHandle] = {}
        self._lock = threading.Lock()
        self._proxy_lock = threading.Lock()
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
            gateway = self.specs[slot % len(self.specs)]
            worker_id = f"gw{self._counter}"
            if gateway.host:
                worker_id += f"@{gateway.host}"
            self._counter += 1
            handle = WorkerHandle(
                slot=slot,
                generation=self._generation,
                worker_id=worker_id,
                host=gateway.host,
                remote=gateway.remote,
            )
            self.workers[slot] = handle
        threading.Thread(
            target=self._start_gateway, args=(handle,), name=f"runset-spawn-{slot}", daemon=True
        ).start()
        return handle

    def _start_gateway(self, handle: WorkerHandle) -> None:
        try:
            spec = f"{self.specs[handle.slot % len(self.specs)].spec}//id={handle.worker_id}"
            self._start_proxies()
            gateway = self.group.makegateway(spec)
            channel = gateway.remote_exec(worker_module)
            handle.gateway = gateway
            handle.channel = channel
            channel.send({"sys_path": [_package_root()], "remote": handle.remote})
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
            if kind == "file":
                receiver = handle.receiver
                if receiver is not None:
                    receiver.write(data.get("name"), data.get("data"), data.get("first"))
                return
            if kind == "finished" and handle.receiver is not None:
                receiver, handle.receiver = handle.receiver, None
                if receiver.problems:
                    data = dict(data)
                    data["warnings"] = [*data.get("warnings", []), *receiver.problems]
            if kind == "ready":
                problem = version_problem(data)
                if problem is not None:
                    kind, data = "refused", {"error": f"{handle.worker_id}: {problem}"}
                    threading.Thread(
                        target=_quiet_exit, args=(handle.gateway,), daemon=True
                    ).start()
                else:
                    handle.pid = data.get("pid")
                    handle.scratch = data.get("scratch")
                    handle.ready = True
            self.events.put(Event(handle.slot, handle.generation, str(kind), dict(data)))
        except BaseException as exc:
            self.events.put(
                Event(handle.slot, handle.generation, "died", {"error": f"bad message: {exc!r}"})
            )

    def _start_proxies(self) -> None:
        # Once, by whichever gateway needs them first; the others wait for them.
        with self._proxy_lock:
            for proxy in self.proxies.values():
                if proxy.id not in self.group:
                    self.group.makegateway(proxy.spec)

    # -- talking to workers ------------------------------------------------------------------
    def current(self, slot: int, generation: int) -> bool:
        handle = self.workers.get(slot)
        return handle is not None and handle.generation == generation

    def send(self, slot: int, event: str, data: Mapping[str, object]) -> bool:
        handle = self.workers.get(slot)
        if handle is None or handle.channel is None:
            return False
        try:
            handle.channel.send((event, as_text(data)))
        except Exception:
            return False
        return True

    def kill(self, slot: int) -> None:
        """Kill a slot's gateway process group outright (unresponsive or crashed worker)."""
        handle = self.workers.get(slot)
        if handle is None:
            return
        if handle.remote:
            # Its pid is another host's: stop it there, through a channel of its own.
            if handle.gateway is not None:
                threading.Thread(target=_remote_kill, args=(handle.gateway,), daemon=True).start()
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
            if handle.pid is not None and not handle.remote:
                with contextlib.suppress(OSError):
                    os.killpg(handle.pid, signal.SIGKILL)

    def sweep(self, slot: int, cookie: str | None) -> int:
        """Kill the processes carrying ``cookie`` on the host of ``slot``'s gateway.

        On a remote host this goes through a helper gateway of the same spec, which kills the
        flow's processes and the slot's worker (by its pid there): the worker may be stuck or
        stopped, and its own channel then answers nothing. The helper also brings the flow's
        files back and removes the dead worker's scratch directory.
        """
        handle = self.workers.get(slot)
        if handle is None or not handle.remote:
            return proctree.sweep_cookie(cookie) if cookie else 0
        spec = self.specs[handle.slot % len(self.specs)].spec
        with self._lock:
            self._counter += 1
            helper_id = f"{handle.worker_id}-sweep{self._counter}"
        try:
            helper = self.group.makegateway(f"{spec}//id={helper_id}")
        except Exception:
            return 0
        receiver, handle.receiver = handle.receiver, None
        source = receiver.source if receiver is not None else None
        cap = receiver.max_bytes if receiver is not None else 0
        try:
            channel = helper.remote_exec(_REMOTE_SWEEP)
            channel.send((cookie, handle.pid, source, cap, handle.scratch))
            while True:
                kind, data = channel.receive(timeout=_REMOTE_SWEEP_S)
                if kind == "file" and receiver is not None:
                    receiver.write(data.get("name"), data.get("data"), data.get("first"))
                elif kind == "swept":
                    return int(data)
        except Exception:
            return 0
        finally:
            _quiet_exit(helper)


def version_problem(info: dict[str, Any]) -> str | None:
    """Why a gateway that reported ``info`` cannot run this controller's flows, or ``None``."""
    import platform

    version = str(info.get("version"))
    if version != __version__:
        return (
            f"pytest-runset {version} on {info.get('host')}, but {__version__} here; "
            "install the same release there"
        )
    mine = ".".join(platform.python_version().split(".")[:2])
    theirs = ".".join(str(info.get("python")).split(".")[:2])
    if mine != theirs:
        return (
            f"Python {info.get('python')} on {info.get('host')}, but "
            f"{platform.python_version()} here; use a Python {mine} there (python=)"
        )
    return None


# Runs in a fresh channel of a remote gateway (stdlib + the installed package there).
_REMOTE_SWEEP = """
import os, shutil, signal
from pytest_runset.gateway.proctree import sweep_cookie
from pytest_runset.gateway.transfer import list_files, send_files
cookie, worker_pid, flow_dir, cap, scratch = channel.receive()
# The flow first, while the stuck worker still holds its groups' watchdog: what is killed
# here is counted, where the watchdog would kill it uncounted once the worker is gone.
swept = sweep_cookie(cookie) if cookie else 0
if worker_pid:
    try:
        os.killpg(worker_pid, signal.SIGKILL)
    except OSError:
        pass
swept += sweep_cookie(cookie) if cookie else 0
if flow_dir and os.path.isdir(flow_dir):
    kept, _skipped = list_files(flow_dir, cap)
    names = [name for name, _size in kept]
    send_files(flow_dir, names, lambda kind, data: channel.send((kind, data)))
if scratch:
    shutil.rmtree(scratch, ignore_errors=True)
channel.send(("swept", swept))
"""
_REMOTE_KILL = """
import os, signal
os.killpg(os.getpgid(0), signal.SIGKILL)
"""
_REMOTE_SWEEP_S = 20.0


def _remote_kill(gateway: Any) -> None:
    with contextlib.suppress(BaseException):
        gateway.remote_exec(_REMOTE_KILL)
    _quiet_exit(gateway)


def _quiet_exit(gateway: Any) -> None:
    with contextlib.suppress(BaseException):
        gateway.exit()


class _EndMarker:
    def __repr__(self) -> str:
        return "<channel closed>"


_END = _EndMarker()

__all__ = ["Event", "Pool", "WorkerHandle"]

"""The gateway side: runs one flow attempt at a time for the controller.

This module is sent to each execnet gateway with ``remote_exec`` and imports only the standard
library and the stdlib-only parts of this package (``runners``, ``proctree``). It talks to the
controller exclusively in ``(event, dict)`` tuples of builtins:

controller -> worker: ``("run", spec)``, ``("cancel", {"reason": str, "status": str})``,
``("stop", {})``
worker -> controller: ``("ready", info)``, ``("started", {...})``, ``("file", chunk)``,
``("finished", result)``

The messages are typed in :mod:`pytest_runset.gateway.protocol`.

If the controller goes away (channel closed, or our parent process changed), the running flow
is killed at once and the worker exits: no flow outlives a SIGKILLed pytest by more than a few
seconds.
"""

from __future__ import annotations

import importlib
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    # Types only: this module runs before the gateway has the package on its sys.path.
    from pytest_runset.gateway.containment import Attempt as ContainedAttempt
    from pytest_runset.gateway.containment import Containment
    from pytest_runset.gateway.protocol import (
        AttemptResult,
        AttemptSpec,
        CancelRequest,
        CancelStatus,
        FileChunk,
        ProbeInfo,
        SidecarSpec,
        StartedEvent,
        Transfer,
        WorkerMessageKind,
    )
    from pytest_runset.gateway.runners import Control

    # What the worker sends with each kind of message.
    WorkerMessage = ProbeInfo | StartedEvent | FileChunk | AttemptResult

_PARENT_POLL_S = 0.5
_ABANDON_GRACE_S = 1.0


class Worker:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.lock = threading.Lock()
        self.control: Control | None = None
        self.thread: threading.Thread | None = None
        self.cookie: str | None = None
        self.parent = os.getppid()
        # Set when a flow's code got stuck for good: the controller replaces this worker.
        self.retired = False
        self.port_locks: list[int] = []
        # A remote gateway's directory for flow dirs while they run (removed when it exits).
        self.scratch: str | None = None
        self.containment: Containment | None = None
        self.paused = False
        # The write end of a remote worker's own watchdog pipe; closed when this process ends.
        self.watchdog_fd: int | None = None

    # -- running one flow -------------------------------------------------------------------
    def start_flow(self, spec: AttemptSpec) -> None:
        from pytest_runset.gateway.runners import Control

        control = Control(float(spec["timeout_s"]))
        if self.retired:
            self.send(
                "finished",
                {
                    "status": "error",
                    "exit_code": None,
                    "message": "worker retired: an earlier flow's code is still running",
                    "flow_id": spec["flow_id"],
                    "attempt": spec["attempt"],
                    "retire": True,
                },
            )
            return
        with self.lock:
            self.control = control
            self.cookie = str(spec["flow_id"])
        thread = threading.Thread(
            target=self._run_flow, args=(spec, control), name="runset-flow", daemon=True
        )
        self.thread = thread
        thread.start()

    def _run_flow(self, spec: AttemptSpec, control: Control) -> None:
        started_at = time.time()
        started = time.monotonic()
        result: AttemptResult
        attempt: ContainedAttempt | None = None
        try:
            from pytest_runset.gateway.flow_dir import open_for_attempt

            # Opened before any code of the flow runs; the plugin's files go through this
            # handle until result.json is written (flow_dir.py).
            open_for_attempt(spec["flow_dir"])
            self.send("started", {"flow_id": spec["flow_id"], "started_at": started_at})
            from pytest_runset.gateway.runners import RUNNERS

            runner = importlib.import_module(RUNNERS[spec["kind"]])
            sidecar = spec.get("sidecar")
            attempt = self._contain(spec, control)
            problem = self._hold_host_ports(spec)
            if problem is not None:
                result = {"status": "error", "exit_code": None, "message": problem}
            elif sidecar:
                result = _with_sidecar(
                    sidecar, spec, control, lambda: runner.run(spec, control), attempt
                )
            else:
                result = runner.run(spec, control)
        except Exception:
            result = {
                "status": "error",
                "exit_code": None,
                "message": "runner failed: " + traceback.format_exc(limit=5).strip(),
            }
        from pytest_runset.gateway.proctree import sweep_cookie

        # Whatever happened, nothing of this flow may keep running into the next one: its
        # group (or every process the worker adopted) first, then the cookie sweep.
        usage = attempt.finish() if attempt is not None else None
        leftovers = sweep_cookie(spec["flow_id"]) + (usage.killed if usage else 0)
        if attempt is not None and usage is not None:
            from pytest_runset.gateway.containment import record_usage

            record_usage(result, attempt, usage, control.paused_s)
        self._release_host_ports()
        result.setdefault("metrics", {})
        result.setdefault("artifacts", [])
        result.setdefault("warnings", [])
        result.update(
            {
                "flow_id": spec["flow_id"],
                "attempt": spec["attempt"],
                "started_at": started_at,
                "duration_s": round(time.monotonic() - started, 6),
                "leftover_processes": leftovers,
            }
        )
        secrets = spec.get("secrets") or []
        if secrets:
            from pytest_runset.gateway.masking import mask_result

            result = mask_result(result, secrets)
        if leftovers:
            result["warnings"].append(
                f"killed {leftovers} leftover process(es) still carrying the flow's cookie"
            )
        transfer = spec.get("transfer")
        names: list[str] = []
        if transfer:
            result, names = _plan_transfer(spec["flow_dir"], transfer, result)
        from pytest_runset.gateway.result_file import write_result

        result = write_result(spec, result)
        if transfer:
            # A remote flow's files go back to the controller's run directory, then go here.
            from pytest_runset.gateway.transfer import remove_tree, send_files

            failed = send_files(spec["flow_dir"], ["result.json", *names], self.send)
            if failed:
                result["warnings"].append(f"could not send: {', '.join(failed)}")
            remove_tree(spec["flow_dir"])
        with self.lock:
            self.control = None
        if result.get("retire"):
            self.retired = True
        self.send("finished", result)

    def _contain(self, spec: AttemptSpec, control: Control) -> ContainedAttempt | None:
        """The attempt's containment (cgroup or process-group tier), started before any of
        its processes; the runners start theirs through ``control.preexec``."""
        request = spec.get("containment")
        if request is None:
            return None
        from pytest_runset.gateway import containment

        if self.containment is None:
            group = str(request["group"])
            cookie_file = request.get("cookie_file")
            if self.scratch:
                # Several gateways of one run may share a remote host: each its own group.
                group = f"{group}.{socket.gethostname()}.{os.getpid()}"
                cookie_file = None
            self.containment = containment.Containment(str(request["tier"]), group, cookie_file)
            containment.CURRENT = self.containment
            if self.scratch and self.containment.tree is not None:
                # On a remote host no run watchdog of the controller's watches this worker:
                # its own kills its groups when it dies (a flow may kill it).
                self.watchdog_fd = containment.watch_worker(self.containment)
        attempt = self.containment.attempt(
            str(spec["flow_id"]),
            memory_max=request.get("memory_max"),
            pids_max=request.get("pids_max"),
            in_process=spec["kind"] == "callable",
        )
        attempt.start()
        control.preexec = attempt.preexec()
        return attempt

    def pause(self, frozen: bool) -> None:
        """Freeze (or thaw) the running attempt's processes and stop (restart) its clock."""
        with self.lock:
            control = self.control
            self.paused = frozen
        if control is not None:
            if frozen:
                control.pause()
            else:
                control.unpause()
        current = self.containment.current if self.containment is not None else None
        if current is not None:
            current.pause(frozen)

    def _hold_host_ports(self, spec: AttemptSpec) -> str | None:
        """A remote flow's ports, held on this host while it runs (see hostports.py)."""
        ports = spec.get("host_ports")
        if not ports:
            return None
        from pytest_runset.gateway.hostports import hold_ports

        self.port_locks, problem = hold_ports(
            [int(port) for port in ports["ports"]], str(ports["marker"])
        )
        return problem

    def _release_host_ports(self) -> None:
        if self.port_locks:
            from pytest_runset.gateway.hostports import release

            release(self.port_locks)

    def cancel(self, reason: str, status: CancelStatus = "interrupted") -> None:
        with self.lock:
            control = self.control
        if control is not None:
            control.cancel(reason, status=status)

    def abandon(self, reason: str) -> None:
        """The controller is gone: kill the running flow quickly and wait for the sweep."""
        with self.lock:
            control = self.control
        if control is None:
            self.shutdown_runners()
            return
        control.cancel(reason, grace_cap=_ABANDON_GRACE_S)
        thread = self.thread
        if thread is not None:
            thread.join(_ABANDON_GRACE_S + 3.0)
        cookie = self.cookie
        if cookie is not None and thread is not None and thread.is_alive():
            # The runner is stuck; this process may be gone in a moment, the flow must not stay.
            from pytest_runset.gateway.proctree import sweep_cookie

            sweep_cookie(cookie)
        self.shutdown_runners()

    def remove_scratch(self) -> None:
        if self.scratch:
            import shutil

            shutil.rmtree(self.scratch, ignore_errors=True)

    def shutdown_runners(self) -> None:
        """Close what runners keep between flows (a warm browser)."""
        from pytest_runset.gateway.runners import shutdown_runners

        shutdown_runners()

    # -- plumbing --------------------------------------------------------------------------
    def send(self, event: WorkerMessageKind, data: WorkerMessage) -> None:
        try:
            self.channel.send((event, data))
        except Exception as exc:
            if event != "finished":
                # The controller is gone; the receive loop or the parent watch will notice.
                return
            # A result execnet cannot serialize (nested too deep for its recursive encoder, a
            # type it does not know) must still end the attempt: otherwise the controller
            # waits out the whole backstop and calls this worker unresponsive. If the channel
            # is closed this fails too, and the controller is gone anyway.
            from pytest_runset.gateway.result_file import fallback_result

            why = f"it cannot be sent: {type(exc).__name__}: {exc}"
            try:
                self.channel.send((event, fallback_result(cast("Mapping[str, Any]", data), why)))
            except Exception:
                pass

    def watch_parent(self) -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != self.parent:
                self.abandon("controller process died")
                self.remove_scratch()
                os._exit(3)

    def serve(self) -> None:
        threading.Thread(target=self.watch_parent, name="runset-parent", daemon=True).start()
        while True:
            try:
                message = self.channel.receive()
            except BaseException:
                # Channel closed or interrupted: the controller is gone.
                self.abandon("controller connection lost")
                return
            event, data = message
            if event == "run":
                self.start_flow(data)
            elif event == "cancel":
                # From the controller's supervision (AttemptWatch.cancel): a CancelRequest.
                request = cast("CancelRequest", data)
                self.cancel(
                    str(request.get("reason", "interrupted")), request.get("status", "interrupted")
                )
            elif event in ("pause", "unpause"):
                self.pause(event == "pause")
            elif event == "stop":
                self.abandon("worker stopped")
                return


def _plan_transfer(
    flow_dir: str, transfer: Transfer, result: AttemptResult
) -> tuple[AttemptResult, list[str]]:
    """The result as the controller will see it (its paths) and the files to send."""
    from pytest_runset.gateway.transfer import list_files, map_paths

    result = map_paths(result, [(old, new) for old, new in transfer["map_back"]])
    kept, skipped = list_files(flow_dir, int(transfer["max_bytes"]))
    if skipped:
        result["skipped_artifacts"] = skipped
        result["warnings"].append(
            f"{len(skipped)} file(s) not brought back from {transfer['host']}: "
            + ", ".join(skipped)
        )
        kept_names = {name for name, _size in kept}
        result["artifacts"] = [a for a in result["artifacts"] if a in kept_names]
    return result, [name for name, _size in kept if name != "result.json"]


def _probe(remote: bool) -> ProbeInfo:
    """What the controller checks before it sends flows: versions, host, a scratch dir."""
    from pytest_runset import __version__

    info: ProbeInfo = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        # Test-only: makes this gateway look like another release (docs/scaling-out.md).
        "version": os.environ.get("RUNSET_TEST_FAKE_VERSION") or __version__,
        "playwright": None,
    }
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            info["playwright"] = version("playwright")
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    if remote:
        import tempfile

        info["scratch"] = tempfile.mkdtemp(prefix="runset-")
    return info


def _with_sidecar(
    sidecar: SidecarSpec,
    spec: AttemptSpec,
    control: Control,
    body: Callable[[], AttemptResult],
    attempt: ContainedAttempt | None,
) -> AttemptResult:
    """Start the flow's sidecar, wait until it is ready, run the flow, stop the sidecar.

    The sidecar carries the flow's cookie, so the sweep after the flow also finds anything it
    left behind. Its start-up counts against the flow's timeout.
    """
    from pytest_runset.gateway.readiness import log_tail, start_process, stop_process, wait_ready

    env = {**os.environ, **spec["env"], **sidecar["env"]}
    for name in spec.get("env_unset") or ():
        env.pop(name, None)
    env["RUNSET_FLOW_ID"] = spec["flow_id"]
    log_path = sidecar["log_path"]
    try:
        proc = start_process(
            sidecar["command"],
            shell=bool(sidecar["shell"]),
            cwd=sidecar["cwd"],
            env=env,
            log_path=log_path,
            preexec=attempt.sidecar_preexec() if attempt is not None else None,
        )
    except OSError as exc:
        return {"status": "error", "exit_code": None, "message": f"sidecar: {exc}"}
    try:
        problem = wait_ready(
            proc,
            ready=sidecar["ready"],
            ready_log=sidecar["ready_log"],
            log_path=log_path,
            timeout_s=min(float(sidecar["ready_timeout_s"]), control.remaining()),
            cancelled=lambda: control.cancel_reason is not None,
        )
        if problem is not None:
            return {
                "status": "error",
                "exit_code": None,
                "message": f"sidecar {problem}",
                "stderr_tail": log_tail(log_path),
                "tail_source": f"{spec['slug']}/sidecar.log",
            }
        done = threading.Event()
        threading.Thread(
            target=_watch_sidecar, args=(proc, control, done), name="runset-sidecar", daemon=True
        ).start()
        try:
            result = body()
        finally:
            done.set()
        if result.get("status") == "error" and str(result.get("message", "")).startswith(
            "sidecar "
        ):
            result["stderr_tail"] = log_tail(log_path)
            result["tail_source"] = f"{spec['slug']}/sidecar.log"
        return result
    finally:
        stop_process(proc, grace_s=float(sidecar["kill_grace_s"]), cookie=None)
        if spec.get("secrets"):
            _mask_file(log_path, spec["secrets"])


def _watch_sidecar(proc: Any, control: Control, done: threading.Event) -> None:
    """A sidecar that dies while its flow runs ends the flow as ``error``: what the flow
    does next would only fail in confusing ways."""
    while not done.wait(0.2):
        code = proc.poll()
        if code is not None:
            from pytest_runset.gateway.readiness import exit_description

            control.cancel(f"sidecar {exit_description(code)} while the flow ran", status="error")
            return


def _mask_file(path: str, secrets: list[str]) -> None:
    """Rewrite a log that was written unfiltered with the secrets masked (masking.py)."""
    from pytest_runset.gateway.masking import mask_file

    mask_file(path, secrets)


def main(channel: Any) -> None:
    init = channel.receive()
    for path in init.get("sys_path", []):
        if path not in sys.path:
            sys.path.append(path)
    try:
        # Our own process group: Ctrl-C at the terminal reaches the controller only, which
        # then stops flows in order; and the controller can kill this gateway as one group.
        os.setpgid(0, 0)
    except OSError:
        pass
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
    info = _probe(bool(init.get("remote")))
    channel.send(("ready", info))
    worker = Worker(channel)
    worker.scratch = info.get("scratch")
    try:
        worker.serve()
    finally:
        worker.remove_scratch()


if __name__ == "__channelexec__":
    main(channel)  # type: ignore[name-defined]  # noqa: F821

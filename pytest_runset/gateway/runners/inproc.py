"""Flows that run inside the worker process (steps, callables), on one long-lived thread.

Playwright's sync API belongs to the thread that started it, and a warm browser outlives single
flows, so each worker runs every in-process flow body on the same *flow thread*. The runner's
own thread only watches the clock:

1. It waits for the body until the flow's deadline (or a cancel).
2. On expiry it gives the body ``kill_grace`` to end by itself. Its Playwright waits are
   bounded by the flow's remaining time, so it usually does, and still takes its failure
   screenshot and saves its trace.
3. Then it kills what the flow runs on (``kill``: its browser's processes, anything carrying
   the flow's cookie), which makes a blocked Playwright call raise.
4. If the body is still stuck (Python code that sleeps), the flow thread is lost for good: the
   result says ``retire`` and the controller replaces this worker.

Stdlib only, like every runner.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from pytest_runset.gateway.flow_dir import attempt_dir
from pytest_runset.gateway.masking import start_masking_copy, usable
from pytest_runset.gateway.protocol import AttemptResult, AttemptSpec
from pytest_runset.gateway.runners import Control

# How long a body may take to return once what it runs on was killed (a Playwright call whose
# browser died raises within milliseconds). Past it the worker retires; the flow's result is
# the same either way.
STUCK_WAIT_S = 1.0
# Files of a flow directory that are not artifacts.
NOT_ARTIFACTS = frozenset({"stdout.log", "stderr.log", "result.json", "flow-report.json"})
# How long the flow thread waits for the masked copy of output children may still be writing;
# the worker's sweep ends those children, and the copy then finishes by itself.
_DRAIN_S = 1.0


class BodyResult(AttemptResult, total=False):
    """What a flow body returns: its :class:`AttemptResult`, with notes for
    :func:`run_inprocess`, which takes them out before the result leaves the runner."""

    # The step that was running: a timeout names it.
    where: str
    # A wait was cut short by the flow's deadline: the flow timed out.
    deadline_hit: bool
    # A callable raised TimeoutError: a timeout when it was near the deadline (python.py).
    timeout_like: bool


Body = Callable[[], BodyResult]


class Job:
    """One body submitted to the flow thread."""

    def __init__(self, body: Body, wake: threading.Event) -> None:
        self.body = body
        self.wake = wake
        self.done = threading.Event()
        self.result: BodyResult | None = None
        self.error: str | None = None
        self.finished_at = 0.0


class FlowThread:
    """The worker's one thread for in-process flow bodies (and Playwright)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.current: Job | None = None
        # Set when a body never returned: this thread is gone for good.
        self.stuck = False

    def submit(self, body: Body, wake: threading.Event) -> Job:
        job = Job(body, wake)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="runset-inproc", daemon=True
                )
                self._thread.start()
        self._jobs.put(job)
        return job

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            self.current = job
            try:
                job.result = job.body()
            except BaseException:
                job.error = traceback.format_exc(limit=8).strip()
            finally:
                job.finished_at = time.monotonic()
                self.current = None
                job.done.set()
                job.wake.set()

    def idle(self) -> bool:
        return self._thread is not None and self.current is None and not self.stuck

    def call(self, body: Body, timeout: float) -> bool:
        """Run ``body`` on the flow thread when it is idle; False if it did not finish in time."""
        if not self.idle():
            return False
        job = self.submit(body, threading.Event())
        return job.done.wait(timeout)


FLOW_THREAD = FlowThread()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def run_inprocess(
    spec: AttemptSpec,
    control: Control,
    body: Body,
    kill: Callable[[], int],
    flow_thread: FlowThread | None = None,
) -> AttemptResult:
    """Run ``body`` on the flow thread under the flow's deadline; see the module docstring."""
    thread = flow_thread if flow_thread is not None else FLOW_THREAD
    if thread.stuck:
        return {
            "status": "error",
            "exit_code": None,
            "message": "worker retired: an earlier flow's code is still running",
            "retire": True,
        }
    job = thread.submit(body, control.wake)
    while not job.done.is_set():
        if control.cancel_reason is not None or control.remaining() <= 0:
            break
        control.wake.wait(control.remaining())
    stopped = not job.done.is_set()
    killed = 0
    if stopped:
        configured = float(spec["kill_grace_s"])
        started = time.monotonic()
        while not job.done.wait(0.02):
            if time.monotonic() - started >= control.kill_grace(configured):
                break
        if not job.done.is_set():
            killed = kill()
            job.done.wait(STUCK_WAIT_S)
    result: BodyResult
    if not job.done.is_set():
        thread.stuck = True
        result = {
            "retire": True,
            "warnings": [
                f"the flow's code did not return {_seconds(STUCK_WAIT_S)}s after its processes "
                "were killed; this worker is replaced"
            ],
        }
    elif job.error is not None:
        result = {"status": "error", "message": "runner failed: " + job.error}
    else:
        result = (job.result or {}).copy()
    result.setdefault("exit_code", None)
    result.setdefault("warnings", [])
    if killed:
        result["warnings"].append(
            f"killed {killed} process(es) the flow ran on (its browser or its children)"
        )
    late = job.done.is_set() and job.finished_at > control.deadline
    if stopped and control.cancel_reason is not None:
        result["status"] = "interrupted"
        result["message"] = control.cancel_reason
    elif (stopped or late or result.pop("deadline_hit", False)) and result.get("status") not in (
        "error",
    ):
        where = result.get("where")
        result["status"] = "timeout"
        result["message"] = f"timeout after {_seconds(control.timeout_s)}s" + (
            f" in {where}" if where else ""
        )
    result.pop("deadline_hit", None)
    result.pop("where", None)
    result.setdefault("status", "error")
    result.setdefault("message", "")
    result["artifacts"] = list_artifacts(spec["flow_dir"])
    return result


def list_artifacts(flow_dir: str) -> list[str]:
    """Files the flow left in its directory (relative paths), logs and results excepted.

    Read through the attempt's open directory: a flow that swapped its directory for a link
    does not make the plugin list (or later keep) another directory's files."""
    try:
        with attempt_dir(flow_dir) as directory:
            names = directory.files()
    except OSError:
        return []
    return [path for path in names if path not in NOT_ARTIFACTS and not path.endswith(".tmp")]


@contextlib.contextmanager
def flow_output(flow_dir: str, secrets: Sequence[str] = ()) -> Iterator[None]:
    """Send this process's stdout and stderr (Python's and the file descriptors, so child
    processes too) to the flow's ``stdout.log`` and ``stderr.log`` while the flow runs.

    With ``secrets``, output goes through a pipe and a masking copy per stream, as a command
    flow's does: the logs never hold a secret, not even while the flow runs, whatever wrote
    it (the flow's Python code or a child that inherited the descriptors).

    A worker runs one flow at a time and its channel to the controller does not use these
    descriptors, so the redirection is safe for the flow's duration.
    """
    saved_fds: list[tuple[int, int]] = []
    saved_streams = (sys.stdout, sys.stderr)
    copies: list[threading.Thread] = []
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(attempt_dir(flow_dir))
        targets: list[int] = []
        for name in ("stdout.log", "stderr.log"):
            log = directory.open_append(name)
            if usable(secrets):
                read_end, write_end = os.pipe()
                # The copy owns the log and the pipe's read end, and closes them at its end.
                copies.append(
                    start_masking_copy(os.fdopen(read_end, "rb"), log, secrets, close=True)
                )
                stack.callback(os.close, write_end)
                targets.append(write_end)
            else:
                stack.callback(log.close)
                targets.append(log.fileno())
        for stream in saved_streams:
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        for fd, target in zip((1, 2), targets, strict=True):
            try:
                saved_fds.append((fd, os.dup(fd)))
                os.dup2(target, fd)
            except OSError:
                pass
        ours = (_text(targets[0]), _text(targets[1]))
        sys.stdout, sys.stderr = ours
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdout, sys.stderr = saved_streams
            for stream in ours:
                with contextlib.suppress(Exception):
                    stream.close()
            for fd, copy in saved_fds:
                with contextlib.suppress(OSError):
                    os.dup2(copy, fd)
                with contextlib.suppress(OSError):
                    os.close(copy)
    # Our ends of the pipes are closed: each copy ends once the flow's children close theirs.
    for thread in copies:
        thread.join(_DRAIN_S)


def _text(fd: int) -> TextIO:
    import io

    return io.TextIOWrapper(
        open(os.dup(fd), "wb", buffering=0),
        encoding="utf-8",
        errors="replace",
        line_buffering=True,
        write_through=True,
    )


@contextlib.contextmanager
def flow_environment(
    env: dict[str, str], cwd: str | None, unset: tuple[str, ...] | list[str] = ()
) -> Iterator[None]:
    """The flow's environment variables and working directory for the flow's duration, so code
    that reads ``os.environ`` and processes it starts see what a command flow would (including
    the cookie that finds those processes later)."""
    saved = dict(os.environ)
    old_cwd = os.getcwd()
    for name in unset:
        os.environ.pop(name, None)
    os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        with contextlib.suppress(OSError):
            os.chdir(old_cwd)


def touch_logs(flow_dir: str) -> None:
    """Every flow directory has both logs, even when the flow writes nothing to them."""
    with attempt_dir(flow_dir) as directory:
        for name in ("stdout.log", "stderr.log"):
            directory.open_append(name).close()


def shutdown(close: Body | None, timeout: float) -> None:
    """Run ``close`` on the flow thread if it is idle (used when the worker stops)."""
    if close is not None:
        FLOW_THREAD.call(close, timeout)

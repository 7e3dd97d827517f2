"""Command flows: an argv (or a shell string) in its own session, output streamed to files."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any, Literal, TypedDict

from pytest_runset.gateway.masking import start_masking_copy
from pytest_runset.gateway.proctree import terminate_group
from pytest_runset.gateway.protocol import AttemptResult, AttemptSpec
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.safe_files import MAX_NESTING, UnsafeFile, nesting_depth, read_regular

SKIP_EXIT_CODE = 77
STDERR_TAIL_LINES = 30
_TAIL_BYTES = 64 * 1024
_MAX_FLOW_REPORT_BYTES = 1024 * 1024
_FLOW_REPORT_STATUSES = ("passed", "failed", "skipped")
# How soon a cancellation (Ctrl-C, the run's global timeout) reaches a running command.
CANCEL_POLL_S = 0.1


class FlowReport(TypedDict):
    """What a flow left at ``$RUNSET_REPORT``, checked (:func:`read_flow_report`)."""

    status: Literal["passed", "failed", "skipped"] | None
    message: str | None
    metrics: dict[str, Any]
    # Relative to the flow directory, inside it.
    artifacts: list[str]
    # Artifacts left out (absolute, or outside the flow directory).
    warnings: list[str]


def tail_lines(path: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, decoded with replacement characters."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _no_constant(name: str) -> float:
    """NaN and Infinity are not JSON: a report holding them is malformed."""
    raise ValueError(f"{name} is not a JSON number")


def read_flow_report(path: str, flow_dir: str) -> tuple[FlowReport | None, str | None]:
    """Read the JSON a flow may leave at ``$RUNSET_REPORT``.

    Returns ``(data, None)``, ``(None, None)`` when there is no file, or ``(None, problem)`` when
    the file is malformed (the flow then ends as ``error``). Artifact paths that are absolute
    or leave the flow directory are dropped with a warning, never followed.
    """
    try:
        # A regular file, not through a link, never more than the cap: a FIFO, /dev/zero or a
        # link the flow planted cannot block or flood the worker.
        raw = read_regular(path, max_bytes=_MAX_FLOW_REPORT_BYTES, follow_symlinks=False)
    except FileNotFoundError:
        return None, None
    except UnsafeFile as exc:
        return None, f"malformed RUNSET_REPORT: {exc} (at most 1 MiB, a regular file)"
    except OSError as exc:
        return None, f"malformed RUNSET_REPORT: cannot read it: {exc.strerror}"
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        return None, f"malformed RUNSET_REPORT: nested more than {MAX_NESTING} levels deep"
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"malformed RUNSET_REPORT ({os.path.basename(path)}): {exc}"
    if nesting_depth(data) > MAX_NESTING:
        return None, f"malformed RUNSET_REPORT: nested more than {MAX_NESTING} levels deep"
    if not isinstance(data, dict):
        return None, "malformed RUNSET_REPORT: expected a JSON object"
    status = data.get("status")
    if status is not None and status not in _FLOW_REPORT_STATUSES:
        return None, f"malformed RUNSET_REPORT: status {status!r} is not passed, failed or skipped"
    message = data.get("message")
    if message is not None and not isinstance(message, str):
        return None, "malformed RUNSET_REPORT: 'message' must be a string"
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        return None, "malformed RUNSET_REPORT: 'metrics' must be an object"
    artifacts = data.get("artifacts", [])
    if not isinstance(artifacts, list) or not all(isinstance(a, str) for a in artifacts):
        return None, "malformed RUNSET_REPORT: 'artifacts' must be a list of relative paths"
    kept: list[str] = []
    warnings: list[str] = []
    root = os.path.realpath(flow_dir)
    for artifact in artifacts:
        target = os.path.realpath(os.path.join(flow_dir, artifact))
        if os.path.isabs(artifact) or os.path.commonpath([root, target]) != root:
            warnings.append(f"artifact {artifact!r} is outside the flow directory; ignored")
        else:
            kept.append(os.path.relpath(target, root))
    return {
        "status": status,
        "message": message,
        "metrics": metrics,
        "artifacts": kept,
        "warnings": warnings,
    }, None


def _start(
    spec: AttemptSpec,
    command: list[str] | str,
    env: dict[str, str],
    stdout_path: str,
    stderr_path: str,
    preexec: Callable[[], None] | None = None,
) -> tuple[subprocess.Popen[bytes], list[threading.Thread]]:
    """Start the flow with its output going straight to its log files.

    With secrets to hide, output goes through pipes and a masking copy instead; that costs a
    thread per stream, so it is only done when there is something to mask.
    """
    secrets = list(spec.get("secrets") or ())
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        target: Any = subprocess.PIPE if secrets else out
        target_err: Any = subprocess.PIPE if secrets else err
        proc = subprocess.Popen(
            command,
            shell=bool(spec.get("shell")),
            cwd=spec["cwd"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=target,
            stderr=target_err,
            start_new_session=True,
            # Only writes to open fds and calls prctl: safe between fork and exec.
            preexec_fn=preexec,  # noqa: PLW1509
        )
        copies: list[threading.Thread] = []
        if secrets:
            # The logs opened before the flow started, not their paths: by now the flow may
            # have swapped its directory for a link (flow_dir.py).
            for stream, log in ((proc.stdout, out), (proc.stderr, err)):
                assert stream is not None
                # The copy thread owns and closes it.
                sink = os.fdopen(os.dup(log.fileno()), "ab")
                copies.append(start_masking_copy(stream, sink, secrets, close=True))
    return proc, copies


def run(spec: AttemptSpec, control: Control) -> AttemptResult:
    flow_dir = spec["flow_dir"]
    env = dict(os.environ)
    for name in spec.get("env_unset") or ():
        env.pop(name, None)
    env.update(spec["env"])
    command = spec["command"]
    # A command flow's spec always has its command (engine/attempt.py).
    assert command is not None
    stdout_path = os.path.join(flow_dir, "stdout.log")
    stderr_path = os.path.join(flow_dir, "stderr.log")
    try:
        proc, copies = _start(spec, command, env, stdout_path, stderr_path, control.preexec)
    except OSError as exc:
        shown = command if isinstance(command, str) else command[0]
        return {
            "status": "error",
            "exit_code": None,
            "message": f"cannot start {shown!r}: {exc.strerror or exc}",
        }

    _wait(proc, control)
    if proc.poll() is None:
        # Timeout or cancellation: the whole session goes, politely first.
        configured = float(spec["kill_grace_s"])
        terminate_group(proc.pid, lambda: control.kill_grace(configured), reap=proc.poll)
        proc.wait()
        _drain(copies)
        if control.cancel_reason is not None:
            return {
                "status": control.cancel_status,
                "exit_code": proc.returncode,
                "message": control.cancel_reason,
            }
        return {
            "status": "timeout",
            "exit_code": proc.returncode,
            "message": f"timeout after {_seconds(control.timeout_s)}s",
            "stderr_tail": tail_lines(stderr_path),
        }
    _drain(copies)
    return _finished(proc.returncode, spec, stderr_path)


def _wait(proc: subprocess.Popen[bytes], control: Control) -> None:
    """Return when the flow exits, its time is up or it is cancelled (``control.wake``).

    The flow's exit is waited for on a pidfd: a thread per flow that waits and wakes costs
    more than the flow when flows are short and many. A cancellation is noticed within
    :data:`CANCEL_POLL_S`. Without pidfds (old kernels), a waiting thread does it.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None:

        def wait_and_wake() -> None:
            proc.wait()
            control.wake.set()

        threading.Thread(target=wait_and_wake, name="runset-wait", daemon=True).start()
        control.wake.wait(control.remaining())
        return
    try:
        while not control.wake.is_set():
            remaining = control.remaining()
            if remaining <= 0:
                return
            if select.select([pidfd], [], [], min(remaining, CANCEL_POLL_S))[0]:
                return
    finally:
        os.close(pidfd)


def _drain(copies: list[threading.Thread]) -> None:
    # A background child may still hold the pipe; the worker's cookie sweep ends it, so only
    # wait briefly here for the output written so far.
    for thread in copies:
        thread.join(1.0)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _finished(code: int, spec: AttemptSpec, stderr_path: str) -> AttemptResult:
    result: AttemptResult = {"exit_code": code}
    if code == 0:
        result.update({"status": "passed", "message": ""})
    elif code == SKIP_EXIT_CODE:
        result.update({"status": "skipped", "message": "skipped (exit code 77)"})
    else:
        tail = tail_lines(stderr_path)
        if not tail.strip():
            # A flow that says why only on stdout (many test runners do) still shows why.
            stdout_tail = tail_lines(os.path.join(os.path.dirname(stderr_path), "stdout.log"))
            if stdout_tail.strip():
                tail = stdout_tail
                result["tail_source"] = f"{spec['slug']}/stdout.log"
        last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
        why = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        result.update(
            {
                "status": "failed",
                "message": f"{why}: {last.strip()}" if last else why,
                "stderr_tail": tail,
            }
        )
    data, problem = read_flow_report(spec["report_path"], spec["flow_dir"])
    if problem is not None:
        result.update({"status": "error", "message": problem})
        return result
    if data is not None:
        if data["status"] is not None and code in (0, SKIP_EXIT_CODE):
            result["status"] = data["status"]
        if data["message"]:
            result["message"] = data["message"]
        result["metrics"] = data["metrics"]
        result["artifacts"] = data["artifacts"]
        result["warnings"] = data["warnings"]
    return result

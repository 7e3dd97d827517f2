"""Starting, probing and stopping a long-lived helper process (a service or a sidecar).

Stdlib only: per-flow sidecars are started by the worker inside a gateway, which must not
import the controller side (pytest, pydantic). Services use the same functions from the
controller.

A helper runs in a session of its own (so its process group holds what it starts), writes
stdout and stderr into one log file, and is "ready" when its HTTP endpoint answers, its TCP
port accepts, and/or its log shows a line matching a regular expression.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from http.client import HTTPException

from pytest_runset.gateway.proctree import pids_with_cookie, sweep_cookie, terminate_group
from pytest_runset.gateway.runners.command import tail_lines

# Neither probe given: a process still alive this long after its start counts as ready.
SETTLE_S = 0.2
_FIRST_DELAY_S = 0.02
_MAX_DELAY_S = 0.2
# One probe never blocks longer than this, so exits and cancellation are noticed in time.
_PROBE_TIMEOUT_S = 1.0
_READ_CHUNK = 64 * 1024
# The log text kept for the ready_log search; older text is dropped so a chatty helper
# cannot grow the controller's memory (a match is looked for on every new chunk anyway).
_KEEP_TEXT = 256 * 1024
_REAP_TIMEOUT_S = 30.0

# Where each helper's log ended when it was started: a log is appended to (a resumed run
# reuses it), and an old "ready" line from a previous start must not count for this one.
_LOG_START: weakref.WeakKeyDictionary[subprocess.Popen[bytes], int] = weakref.WeakKeyDictionary()


def _shown(command: list[str] | str) -> str:
    if isinstance(command, str):
        return command
    return command[0] if command else ""


def start_process(
    command: list[str] | str,
    *,
    shell: bool,
    cwd: str,
    env: dict[str, str],
    log_path: str,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, stdout and stderr appended to ``log_path``.

    ``env`` is the complete environment of the process (nothing is inherited); ``preexec``
    runs in the child before it executes the command (it joins its cgroup there). Raises
    :class:`OSError` with a one-line message when it cannot be started.
    """
    if isinstance(command, list) and not command:
        raise OSError("cannot start an empty command")
    if not os.path.isdir(cwd):
        raise OSError(f"cannot start {_shown(command)!r}: working directory {cwd!r} does not exist")
    parent = os.path.dirname(log_path)
    try:
        if parent:
            os.makedirs(parent, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed below, the child keeps its own fd
    except OSError as exc:
        raise OSError(f"cannot open log {log_path!r}: {exc.strerror or exc}") from exc
    with log:
        start_offset = log.seek(0, os.SEEK_END)
        try:
            proc = subprocess.Popen(
                command,
                shell=shell,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only writes to open fds and calls prctl: safe between fork and exec.
                preexec_fn=preexec,  # noqa: PLW1509
            )
        except OSError as exc:
            raise OSError(f"cannot start {_shown(command)!r}: {exc.strerror or exc}") from exc
        except (ValueError, TypeError) as exc:
            # Popen's own argument checks (a NUL byte in an argument or in the environment).
            raise OSError(f"cannot start {_shown(command)!r}: {exc}") from exc
    _LOG_START[proc] = start_offset
    return proc


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_description(returncode: int) -> str:
    """``exited with code N`` or ``killed by SIGNAME`` for a finished process."""
    if returncode < 0:
        return f"killed by {_signal_name(-returncode)}"
    return f"exited with code {returncode}"


def _seconds(value: float) -> str:
    return f"{value:g}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect already proves the server answers; its target may not be reachable yet."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _http_opener() -> urllib.request.OpenerDirector:
    # Readiness asks "does it answer", not "is its certificate trusted": local services often
    # use self-signed certificates.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return urllib.request.build_opener(
        # An http_proxy from the environment must not intercept a probe of 127.0.0.1.
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=context),
        _NoRedirect(),
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return _error_text(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class _HttpProbe:
    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = _http_opener()

    def __call__(self, timeout_s: float) -> str | None:
        try:
            with self.opener.open(self.url, timeout=timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            status = exc.code
        except (OSError, HTTPException, ValueError) as exc:
            return f"{self.url}: {_error_text(exc)}"
        if 200 <= status < 400:
            return None
        return f"{self.url}: HTTP {status}"


class _TcpProbe:
    def __init__(self, address: str, host: str, port: int) -> None:
        self.address = address
        self.host = host
        self.port = port

    def __call__(self, timeout_s: float) -> str | None:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s):
                return None
        except OSError as exc:
            return f"{self.address}: {_error_text(exc)}"


def _make_probe(ready: str) -> Callable[[float], str | None]:
    """A probe returning None when ready, else what went wrong; ValueError if malformed."""
    parts = urllib.parse.urlsplit(ready)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"ready URL {ready!r} has no host")
        return _HttpProbe(ready)
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"ready address {ready!r} is not tcp://host:port")
        return _TcpProbe(ready, parts.hostname, port)
    raise ValueError(f"ready {ready!r} is neither an http(s):// URL nor tcp://host:port")


class _LogWatch:
    """Searches a growing log for a regex, reading only what was appended since last time."""

    def __init__(self, pattern: str, path: str, offset: int) -> None:
        self.regex = re.compile(pattern, re.MULTILINE)
        self.pattern = pattern
        self.path = path
        self.offset = offset
        # Incremental: a UTF-8 sequence split across two reads still decodes as one character.
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""

    def __call__(self, timeout_s: float) -> str | None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                # Searched per chunk (not once at the end) so that trimming never drops a
                # match before it was looked for.
                while chunk := handle.read(_READ_CHUNK):
                    self.offset += len(chunk)
                    self.text += self.decoder.decode(chunk)
                    if self.regex.search(self.text):
                        return None
                    self._trim()
        except OSError as exc:
            return f"cannot read log: {_error_text(exc)}"
        return f"no line matching {self.pattern!r} in the log"

    def _trim(self) -> None:
        if len(self.text) > _KEEP_TEXT:
            keep = self.text[-_KEEP_TEXT // 4 :]
            # Cut at a line start so that a '^' anchored pattern still sees whole lines.
            newline = keep.find("\n")
            self.text = keep[newline + 1 :] if newline >= 0 else keep


def wait_ready(
    proc: subprocess.Popen[bytes],
    *,
    ready: str | None,
    ready_log: str | None,
    log_path: str,
    timeout_s: float,
    cancelled: Callable[[], bool] | None = None,
) -> str | None:
    """Wait until ``proc`` is ready; None when it is, else a one-line problem.

    ``ready``: ``http(s)://...`` (any 2xx/3xx answer) or ``tcp://host:port`` (a connect
    succeeds). ``ready_log``: a regex searched in what the process wrote to ``log_path``.
    Both given: both must hold (each only needs to hold once). Neither: alive after a short
    settle. Problems: ``exited with code N before it was ready`` / ``killed by SIGNAME before
    it was ready``, ``not ready after Ns (<last probe error>)``, ``cancelled``.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    # A timeout shorter than the settle must not turn a live process into "not ready".
    settle_s = min(SETTLE_S, timeout_s)
    checks: list[Callable[[float], str | None]] = []
    if ready is not None:
        try:
            checks.append(_make_probe(ready))
        except ValueError as exc:
            return str(exc)
    if ready_log is not None:
        try:
            checks.append(_LogWatch(ready_log, log_path, _LOG_START.get(proc, 0)))
        except re.error as exc:
            return f"ready_log {ready_log!r} is not a valid regular expression: {exc}"
    pending = list(checks)
    problems: dict[int, str] = {}
    delay = _FIRST_DELAY_S
    while True:
        if cancelled is not None and cancelled():
            return "cancelled"
        code = proc.poll()
        if code is not None:
            return f"{exit_description(code)} before it was ready"
        now = time.monotonic()
        if not checks:
            if now - started >= settle_s:
                return None
        else:
            for check in list(pending):
                per_try = max(0.05, min(_PROBE_TIMEOUT_S, deadline - time.monotonic()))
                problem = check(per_try)
                if problem is None:
                    # A condition that held once stays met: a log line does not un-happen,
                    # and a server that answered was up.
                    pending.remove(check)
                else:
                    problems[id(check)] = problem
            if not pending:
                # It may have died between the last poll and the probe succeeding.
                code = proc.poll()
                if code is not None:
                    return f"{exit_description(code)} before it was ready"
                return None
        now = time.monotonic()
        if now >= deadline:
            why = "; ".join(problems[id(check)] for check in pending if id(check) in problems)
            if not checks:
                why = "it did not settle"
            return f"not ready after {_seconds(timeout_s)}s ({why or 'no probe finished'})"
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 1.5, _MAX_DELAY_S)


def _group_is_ours(pgid: int, cookie: str) -> bool:
    """Whether a live process carrying ``cookie`` is still in process group ``pgid``."""
    for pid in pids_with_cookie(cookie):
        try:
            if os.getpgid(pid) == pgid:
                return True
        except OSError:
            continue
    return False


def stop_process(proc: subprocess.Popen[bytes], *, grace_s: float, cookie: str | None) -> int:
    """SIGTERM the process group, SIGKILL after ``grace_s``, reap, then sweep ``cookie``.

    Returns how many processes the cookie sweep had to kill (daemons that left the group).
    """
    # Once the leader is reaped and its group empty, the kernel may hand its pid (and so the
    # group id) to an unrelated process: signal the group only when it provably is ours.
    if proc.returncode is None or (cookie is not None and _group_is_ours(proc.pid, cookie)):
        terminate_group(proc.pid, grace_s, reap=proc.poll)
    try:
        proc.wait(timeout=_REAP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # Unkillable (stuck in the kernel): do not hang the run on it.
        pass
    if cookie is None:
        return 0
    return sweep_cookie(cookie)


def log_tail(log_path: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, decoded with replacement characters."""
    return tail_lines(log_path, lines)

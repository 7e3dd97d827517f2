"""The run's watchdog: when the controller dies, whatever of its run still runs dies too.

A small process of its own session, started by the controller when a run starts. It holds
the read end of a pipe whose write end only the controller has; when the controller exits,
however it exits (SIGKILL included, or killed by one of its own flows), the pipe reaches end
of file and the watchdog kills the run's cgroups (``cgroup.kill``, recursive) and every
process that carries one of the run's cookies (``RUNSET_FLOW_ID=<run_id>.…``: flows, sidecars,
services, browsers). A controller that finishes normally writes ``done`` first: the
watchdog then only removes what is left and exits.

Run as ``python -m pytest_runset.gateway.watchdog COOKIE_FILE [CGROUP_DIR ...]`` with the pipe
on standard input (``-`` for no cookie file). Stdlib only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pytest_runset.gateway import cgroups
from pytest_runset.gateway.proctree import sweep_cookies
from pytest_runset.gateway.safe_files import UnsafeFile, read_regular

# A run of 100,000 attempts lists some 6 MB of cookies.
_COOKIE_FILE_MAX = 64 * 1024 * 1024


def spawn(
    cookie_file: str | None, directories: list[str], keep_fd: int | None = None
) -> tuple[int, int]:
    """Start the watchdog; return its pid and the write end of its pipe (keep it open for as
    long as the run lives, never let a child inherit it).

    ``keep_fd`` (the run's registration lock) is inherited: the lock stays held until the
    watchdog has cleaned up too, so a later session waits for it before it takes over.
    """
    read_end, write_end = os.pipe()
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env.pop("RUNSET_FLOW_ID", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_runset.gateway.watchdog",
                cookie_file or "-",
                *directories,
            ],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            # Its own session: Ctrl-C, SIGHUP of the terminal and group kills do not reach it.
            start_new_session=True,
            close_fds=True,
            pass_fds=(keep_fd,) if keep_fd is not None else (),
        )
    finally:
        os.close(read_end)
    return proc.pid, write_end


def finish(write_end: int) -> None:
    """The run ended normally: tell the watchdog, which tidies up and exits."""
    try:
        os.write(write_end, b"done\n")
    except OSError:
        pass
    try:
        os.close(write_end)
    except OSError:
        pass


def clean(cookie_file: str | None, directories: list[str]) -> int:
    """Kill everything of a run: its cgroups, then every process with one of its cookies.
    Returns how many processes were killed. Also used by a later session on a dead run."""
    killed = 0
    for directory in directories:
        killed += cgroups.kill_directory_tree(directory)
    if cookie_file:
        killed += sweep_cookies(read_cookies(cookie_file))
    for directory in directories:
        cgroups.remove_directory_tree(directory)
    return killed


def read_cookies(cookie_file: str) -> set[str]:
    """The cookies a run handed out (one per line; a regular file, read with a cap)."""
    try:
        data = read_regular(cookie_file, max_bytes=_COOKIE_FILE_MAX, follow_symlinks=False)
    except (OSError, UnsafeFile):
        return set()
    return {line for line in data.decode("utf-8", "replace").splitlines() if line}


def note_cookie(cookie_file: str | None, cookie: str) -> None:
    """Add a cookie the run hands out (a flow attempt, a service, a browser) to its file."""
    if not cookie_file or "\n" in cookie:
        return
    try:
        fd = os.open(cookie_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, f"{cookie}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    cookie_file = None if argv[0] == "-" else argv[0]
    directories = argv[1:]
    data = b""
    try:
        while chunk := os.read(0, 64):
            data += chunk
    except OSError:
        pass
    # After "done" the controller has stopped everything itself and this only tidies up;
    # without it the controller died and this is what stops the run.
    clean(cookie_file, directories)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The run's watchdog: when the controller dies, whatever of its run still runs dies too.

A small process of its own session, started by the controller when a run starts. It holds
the read end of a pipe whose write end only the controller has; when the controller exits,
however it exits (SIGKILL included, or killed by one of its own flows), the pipe reaches end
of file and the watchdog kills the run's cgroups (``cgroup.kill``, recursive) and every
process that carries one of the run's cookies (``RUNSET_FLOW_ID=<run_id>.…``: flows, sidecars,
services, browsers). A controller that finishes normally writes ``done`` first: the
watchdog then only removes what is left and exits.

Run as ``python -m pytest_runset.gateway.watchdog RUN_ID [CGROUP_DIR ...]`` with the pipe on
standard input. Stdlib only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pytest_runset.gateway import cgroups
from pytest_runset.gateway.proctree import sweep_cookie_prefix


def spawn(run_id: str, directories: list[str], keep_fd: int | None = None) -> tuple[int, int]:
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
            [sys.executable, "-m", "pytest_runset.gateway.watchdog", run_id, *directories],
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


def clean(run_id: str, directories: list[str]) -> int:
    """Kill everything of the run: its cgroups, then every process with one of its cookies.
    Returns how many processes were killed. Also used by a later session on a dead run."""
    killed = 0
    for directory in directories:
        killed += cgroups.kill_directory_tree(directory)
    killed += sweep_cookie_prefix(f"{run_id}.")
    for directory in directories:
        cgroups.remove_directory_tree(directory)
    return killed


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    run_id, directories = argv[0], argv[1:]
    data = b""
    try:
        while chunk := os.read(0, 64):
            data += chunk
    except OSError:
        pass
    # After "done" the controller has stopped everything itself and this only tidies up;
    # without it the controller died and this is what stops the run.
    clean(run_id, directories)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

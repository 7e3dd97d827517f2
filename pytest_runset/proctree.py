"""Finding and killing a flow's processes (stdlib only: runs inside gateways too).

A flow runs in its own session, so its process group holds everything it starts, except what
daemonizes (double fork + ``setsid``) out of it. Every flow process carries the environment
cookie ``RUNSET_FLOW_ID=<id>``, which children inherit, so a scan of ``/proc`` finds the
escapees as well. This is the same idea as Jenkins' ProcessTreeKiller.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

COOKIE_VAR = "RUNSET_FLOW_ID"
_PROC = "/proc"


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    return needle in data.split(b"\0")


def pids_with_cookie(cookie: str) -> list[int]:
    """Pids of live processes whose environment holds ``RUNSET_FLOW_ID=<cookie>``.

    The caller's own process is never listed. On systems without ``/proc`` nothing is found,
    and only process-group kills apply.
    """
    needle = f"{COOKIE_VAR}={cookie}".encode()
    me = os.getpid()
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.isdigit():
            pid = int(entry)
            if pid != me and _environ_has(pid, needle):
                found.append(pid)
    return found


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself hold ") ".
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def sweep_cookie(cookie: str, *, rounds: int = 10) -> int:
    """SIGKILL every process carrying ``cookie``; return how many were killed.

    A scan is not atomic: a process can fork after ``/proc`` was listed while its parent exits
    before its environment is read, and the child would be missed. So the sweep only stops
    after two scans in a row find nothing (zombies, already dead, do not count).
    """
    killed: set[int] = set()
    quiet = 0
    for _ in range(rounds):
        alive = [pid for pid in pids_with_cookie(cookie) if not _is_zombie(pid)]
        if not alive:
            quiet += 1
            if quiet >= 2:
                break
            time.sleep(0.005)
            continue
        quiet = 0
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return len(killed)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


def terminate_group(
    pgid: int,
    grace_s: float,
    *,
    leader_exited: Callable[[float], bool] | None = None,
) -> None:
    """SIGTERM the group, wait up to ``grace_s`` for it to empty, then SIGKILL it.

    ``leader_exited(timeout)`` lets the caller wait on its own child (and reap it) instead of
    polling; the group is still checked afterwards because children may outlive the leader.
    """
    if not signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    if leader_exited is not None:
        leader_exited(grace_s)
    delay = 0.01
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    signal_group(pgid, signal.SIGKILL)

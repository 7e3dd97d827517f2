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
from collections.abc import Callable, Collection

COOKIE_VAR = "RUNSET_FLOW_ID"
_COOKIE_ENTRY = f"{COOKIE_VAR}=".encode()
_PROC = "/proc"


def browser_cookie(run_id: str, worker_id: str) -> str:
    """The cookie of a worker's warm browser: it outlives single flows, so it carries its own.

    Both sides compute it: the worker launches the browser with it, the controller sweeps it
    when it kills or loses that worker. A flow cookie (``<run_id>.<slug>.<attempt>.<hex>``)
    can never be equal to it.
    """
    return f"{run_id}.browser.{worker_id}"


def _environ_cookie(pid: int) -> bytes | None:
    """The ``RUNSET_FLOW_ID`` value in a process's environment, if any."""
    entries = _environ_entries(pid)
    for entry in entries or ():
        if entry.startswith(_COOKIE_ENTRY):
            return entry[len(_COOKIE_ENTRY) :]
    return None


def _environ_entries(pid: int) -> list[bytes] | None:
    data = read_kernel_file(f"{_PROC}/{pid}/environ")
    return None if data is None else data.split(b"\0")


def read_kernel_file(path: str) -> bytes | None:
    """The whole of a ``/proc`` or cgroup file (their size is not known before reading);
    ``None`` when it cannot be read.

    A plain descriptor: a buffered file object costs several more system calls, and every
    flow's end scans every process and reads its cgroups' files.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _environ_has(pid: int, needle: bytes) -> bool:
    entries = _environ_entries(pid)
    return entries is not None and needle in entries


def pids_with_cookie(cookie: str) -> list[int]:
    """Pids of live processes whose environment holds ``RUNSET_FLOW_ID=<cookie>``.

    The caller's own process is never listed. On systems without ``/proc`` nothing is found,
    and only process-group kills apply.
    """
    needle = f"{COOKIE_VAR}={cookie}".encode()
    return [pid for pid in _all_pids() if _environ_has(pid, needle)]


def pids_with_cookies(cookies: Collection[str]) -> list[int]:
    """Pids of live processes carrying any of ``cookies`` (one scan of ``/proc`` for all)."""
    wanted = {cookie.encode() for cookie in cookies}
    return [pid for pid in _all_pids() if _environ_cookie(pid) in wanted]


def _all_pids() -> list[int]:
    me = os.getpid()
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return []
    return [int(entry) for entry in entries if entry.isdigit() and int(entry) != me]


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself hold ") ".
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def last_pid() -> int | None:
    """The pid the kernel allocated last (``/proc/loadavg``), or None when unknown.

    Any fork moves it (in a child pid namespace too), so an unchanged value means that no
    process was created in between.
    """
    try:
        with open(f"{_PROC}/loadavg", "rb") as handle:
            return int(handle.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def sweep_cookies(cookies: Collection[str]) -> int:
    """SIGKILL every process carrying any of ``cookies`` (a whole run's), as
    :func:`sweep_cookie` does for one."""
    if not cookies:
        return 0
    return _sweep(lambda: pids_with_cookies(cookies))


def sweep_cookie(cookie: str, *, rounds: int = 10) -> int:
    """SIGKILL every process carrying ``cookie``; return how many were killed.

    A scan is not atomic: a process can fork after ``/proc`` was listed while its parent exits
    before its environment is read, and the child would be missed. So the sweep only stops
    after two scans in a row find nothing (zombies, already dead, do not count), or after one
    during which no process at all was created (the kernel's last allocated pid did not
    move): then nothing could fork out of sight. The second scan follows the first at once:
    a child forked before its parent exited is listed in ``/proc`` by then, and a pause would
    cost every flow its length (this runs after each).
    """
    # Looked up at each call (not bound here): tests watch the scans.
    return _sweep(lambda: pids_with_cookie(cookie), rounds)


def _sweep(scan: Callable[[], list[int]], rounds: int = 10) -> int:
    killed: set[int] = set()
    quiet = 0
    for _ in range(rounds):
        before = last_pid()
        alive = [pid for pid in scan() if not _is_zombie(pid)]
        if not alive:
            quiet += 1
            if quiet >= 2 or (before is not None and before == last_pid()):
                break
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
    """Whether a process group still has a live (non-zombie) member.

    Orphaned members become zombies until init reaps them, which can take a while in a
    container; they are dead already and must not stretch the kill grace.
    """
    if not signal_group(pgid, 0):
        return False
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{_PROC}/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is the state, fields[2] the process group.
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            return True
    return False


def terminate_group(
    pgid: int,
    grace_s: float | Callable[[], float],
    *,
    reap: Callable[[], object] | None = None,
) -> None:
    """SIGTERM the group, wait up to the grace for it to empty, then SIGKILL it.

    ``grace_s`` may be a callable: it is asked again on every check, so a shorter grace that
    arrives while waiting (the controller went away) takes effect at once. ``reap`` lets the
    caller collect its own child (the group leader) without blocking.
    """
    if not signal_group(pgid, signal.SIGTERM):
        return
    started = time.monotonic()
    delay = 0.005
    while True:
        if reap is not None:
            reap()
        if not group_alive(pgid):
            break
        limit = grace_s() if callable(grace_s) else grace_s
        if time.monotonic() - started >= limit:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    if reap is not None:
        # The leader may have turned zombie after the last reap: collect it now.
        reap()
    signal_group(pgid, signal.SIGKILL)

"""Live runs of this host, so that a later session can clean up after a dead one.

Each run registers a file ``runs/<run id>.json`` in the per-user lock directory and holds an
exclusive ``flock`` on it for as long as it lives; its watchdog inherits the same open file,
so the lock is free only once the controller *and* its watchdog are gone. A session that
starts finds every registration whose lock it can take: that run died, and whatever of it
still runs (a flow that killed its worker, its controller and its watchdog) is killed through
the run's cgroups and cookies before this session leases anything. A registration of the run
this session continues (``--runset-resume``) is waited for, so a resumed flow never meets its
dead copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from pytest_runset.gateway.safe_files import UnsafeFile, read_regular

_DIR = "runs"
_RECORD_MAX_BYTES = 64 * 1024
# How long a session waits for a dead run of the same id to be cleaned by its watchdog.
SAME_RUN_WAIT_S = 15.0


class RunRecord(TypedDict):
    """What a registration file holds."""

    run_id: str
    pid: int
    host_boot: str
    cgroups: list[str]
    # The cookies the run handed out, one per line (flows, services, browsers).
    cookie_file: str | None


@dataclass
class Registration:
    """This session's registration: the open, locked file."""

    path: Path
    fd: int

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.with_suffix(".cookies").unlink()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _file_name(run_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in run_id)[:150]
    return f"{safe}.json"


def _try_lock(fd: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _read_record(path: Path) -> RunRecord | None:
    try:
        data = json.loads(read_regular(path, max_bytes=_RECORD_MAX_BYTES, follow_symlinks=False))
    except (OSError, UnsafeFile, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        return None
    directories = data.get("cgroups")
    if not isinstance(directories, list) or not all(isinstance(d, str) for d in directories):
        return None
    cookie_file = data.get("cookie_file")
    return {
        "run_id": data["run_id"],
        "pid": data["pid"] if isinstance(data.get("pid"), int) else 0,
        "host_boot": str(data.get("host_boot") or ""),
        "cgroups": directories,
        "cookie_file": cookie_file if isinstance(cookie_file, str) else None,
    }


def _controller_alive(path: Path) -> bool:
    record = _read_record(path)
    if record is None or record["pid"] <= 0 or record["pid"] == os.getpid():
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def reap_dead_runs(
    lock_dir: Path,
    own_key: str,
    clean: Callable[[str | None, list[str]], int],
) -> list[tuple[str, int]]:
    """Clean up after every registered run whose controller and watchdog are gone.

    Returns ``(run_id, processes killed)`` for each run that was cleaned. The registration of
    ``own_key`` (this run, resumed) is waited for; others that are still locked belong to
    live sessions and are left alone.
    """
    directory = lock_dir / _DIR
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    own = _file_name(own_key)
    cleaned: list[tuple[str, int]] = []
    boot = _boot_id()
    for name in names:
        if not name.endswith(".json"):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            # Only a dead controller's watchdog is worth waiting for (it is cleaning up).
            wait = SAME_RUN_WAIT_S if name == own and not _controller_alive(path) else 0.0
            if not _try_lock(fd, wait):
                continue
            record = _read_record(path)
            killed = 0
            # A registration from before a reboot has nothing left to kill.
            if record is not None and (not record["host_boot"] or record["host_boot"] == boot):
                killed = clean(record["cookie_file"], record["cgroups"])
            with contextlib.suppress(OSError):
                path.unlink()
            if record is not None and record["cookie_file"]:
                with contextlib.suppress(OSError):
                    os.unlink(record["cookie_file"])
            if record is not None:
                cleaned.append((record["run_id"], killed))
        finally:
            os.close(fd)
    return cleaned


def cookie_file_for(lock_dir: Path, key: str) -> Path:
    """Where the run ``key`` lists the cookies it hands out."""
    return lock_dir / _DIR / (_file_name(key).removesuffix(".json") + ".cookies")


def register(lock_dir: Path, key: str, run_id: str, cgroup_dirs: list[str]) -> Registration:
    """Register this session's run (``key``: run id and run directories) and hold its lock.
    Raises OSError when it cannot."""
    directory = lock_dir / _DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / _file_name(key)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        wait = 0.0 if _controller_alive(path) else SAME_RUN_WAIT_S
        if not _try_lock(fd, wait):
            raise OSError(f"run {run_id} is registered by a live session ({path})")
        record: RunRecord = {
            "run_id": run_id,
            "pid": os.getpid(),
            "host_boot": _boot_id(),
            "cgroups": cgroup_dirs,
            "cookie_file": str(cookie_file_for(lock_dir, key)),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
    except BaseException:
        os.close(fd)
        raise
    return Registration(path=path, fd=fd)

"""Ports held on the host that runs a remote flow (stdlib only: runs inside gateways).

The controller leases a flow's ports run-wide (no two flows of the run get the same port, and
sessions on the controller's host see the lease). A flow on another host binds its ports
there, so its worker also holds them on that host: the same ``port-N.lock`` files in that
host's lock directory that pytest-runset sessions started there take (``flock``, as
``filelock`` does on POSIX), and a bind check on 127.0.0.1. A port busy on that host ends the
attempt as ``error`` with a message naming port and host (it is not picked again elsewhere).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import tempfile


def _lock_dir() -> str:
    path = os.environ.get("RUNSET_LOCK_DIR") or os.path.join(
        tempfile.gettempdir(), f"pytest-runset-{os.getuid()}"
    )
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise OSError(f"lock directory {path} is not a private plain directory")
    return path


def port_is_bindable(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (a lease alone cannot know about foreign servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def hold_ports(ports: list[int], controller_marker: str) -> tuple[list[int], str | None]:
    """Lock ``ports`` on this host; ``(fds, None)``, or ``([], why not)`` holding nothing.

    ``controller_marker`` names a file the controller keeps in its own lock directory: when
    this host sees it, the controller's lease already holds these ports here (the same host,
    or a shared lock directory), and nothing more is taken.
    """
    held: list[int] = []
    try:
        directory = _lock_dir()
        if os.path.exists(os.path.join(directory, os.path.basename(controller_marker))):
            return [], None
        for port in ports:
            path = os.path.join(directory, f"port-{port}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                release(held)
                return [], f"port {port} is leased by another session on {socket.gethostname()}"
            held.append(fd)
            if not port_is_bindable(port):
                release(held)
                return [], f"port {port} is in use on {socket.gethostname()}"
    except OSError as exc:
        release(held)
        return [], f"cannot lease ports on {socket.gethostname()}: {exc}"
    return held, None


def release(fds: list[int]) -> None:
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())

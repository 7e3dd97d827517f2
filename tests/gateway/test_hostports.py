"""Ports a remote flow holds on its own host: lock files other sessions there honour, a bind
check, and no double lease when the controller's lock directory is the host's own."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

import filelock
import pytest

from pytest_runset.gateway.hostports import hold_ports, release


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "locks"
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(directory))
    return directory


@pytest.fixture
def free_ports() -> list[int]:
    sockets = [socket.socket() for _ in range(2)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_held_ports_are_locked_for_other_sessions_until_released(
    lock_dir: Path, free_ports: list[int]
) -> None:
    fds, problem = hold_ports(free_ports, "controller-x.marker")
    assert problem is None
    assert len(fds) == 2
    other = filelock.FileLock(str(lock_dir / f"port-{free_ports[0]}.lock"))
    with pytest.raises(filelock.Timeout):
        other.acquire(timeout=0)
    release(fds)
    assert fds == []
    other.acquire(timeout=0)
    other.release()


def test_a_port_leased_by_another_session_on_the_host_is_refused(
    lock_dir: Path, free_ports: list[int]
) -> None:
    lock_dir.mkdir(mode=0o700)
    other = filelock.FileLock(str(lock_dir / f"port-{free_ports[1]}.lock"))
    other.acquire()
    try:
        fds, problem = hold_ports(free_ports, "controller-x.marker")
    finally:
        other.release()
    assert fds == []
    assert problem == f"port {free_ports[1]} is leased by another session on {socket.gethostname()}"
    # The first port was given back.
    fd = os.open(lock_dir / f"port-{free_ports[0]}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_a_port_in_use_on_the_host_is_refused(lock_dir: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        fds, problem = hold_ports([port], "controller-x.marker")
    assert fds == []
    assert problem == f"port {port} is in use on {socket.gethostname()}"


def test_nothing_is_taken_where_the_controller_already_holds_the_leases(
    lock_dir: Path, free_ports: list[int]
) -> None:
    lock_dir.mkdir(mode=0o700)
    (lock_dir / "controller-run-1.marker").touch()
    other = filelock.FileLock(str(lock_dir / f"port-{free_ports[0]}.lock"))
    other.acquire()
    try:
        fds, problem = hold_ports(free_ports, "controller-run-1.marker")
    finally:
        other.release()
    assert (fds, problem) == ([], None)


def test_an_unsafe_lock_directory_is_a_problem_not_a_crash(
    lock_dir: Path, free_ports: list[int]
) -> None:
    lock_dir.mkdir(mode=0o777)
    lock_dir.chmod(0o777)
    fds, problem = hold_ports(free_ports, "m")
    assert fds == []
    assert problem is not None
    assert "is not a private plain directory" in problem

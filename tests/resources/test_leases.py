"""Leases on real lock files: exclusive within and across processes, gone with their holder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_for
from pytest_runset.resources.leases import LOCK_DIR_ENV, Lease, LeaseError, Leaser, lock_directory


@pytest.fixture
def leaser(tmp_path: Path) -> Leaser:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(mode=0o700)
    return Leaser(lock_dir)


def test_lock_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "mine"
    monkeypatch.setenv(LOCK_DIR_ENV, str(target))
    path = lock_directory()
    assert path == target
    assert path.stat().st_mode & 0o777 == 0o700


def test_lock_directory_writable_by_others_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "open"
    target.mkdir()
    target.chmod(0o777)
    monkeypatch.setenv(LOCK_DIR_ENV, str(target))
    with pytest.raises(LeaseError, match="writable by others"):
        lock_directory()


def test_lock_directory_that_is_a_symlink_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "link"))
    with pytest.raises(LeaseError, match="not a plain directory"):
        lock_directory()


def test_a_parent_owned_by_someone_else_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a directory to another user needs root (CI runs as root)")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    monkeypatch.setenv(LOCK_DIR_ENV, str(theirs / "locks"))
    with pytest.raises(LeaseError, match=f"its parent {theirs} belongs to uid 65534"):
        lock_directory()


def test_a_parent_writable_by_others_is_refused_unless_sticky(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(LOCK_DIR_ENV, str(shared / "locks"))
    with pytest.raises(LeaseError, match=f"its parent {shared} is writable by others"):
        lock_directory()
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot rename our directory away
    assert lock_directory() == shared / "locks"


def test_a_persona_is_leased_once(leaser: Leaser) -> None:
    first, second = Lease(), Lease()
    assert leaser.take_persona(["alice"], first)
    assert first.persona == "alice"
    assert not leaser.take_persona(["alice"], second)
    first.release()
    assert leaser.take_persona(["alice"], second)
    second.release()


def test_a_pool_hands_out_each_member_once(leaser: Leaser) -> None:
    leases = [Lease() for _ in range(3)]
    assert leaser.take_persona(["alice", "bob"], leases[0])
    assert leaser.take_persona(["alice", "bob"], leases[1])
    assert {leases[0].persona, leases[1].persona} == {"alice", "bob"}
    assert not leaser.take_persona(["alice", "bob"], leases[2])
    for lease in leases:
        lease.release()


def test_limit_slots(leaser: Leaser) -> None:
    leases = [Lease() for _ in range(3)]
    assert leaser.take_limit("browser", 2, leases[0])
    assert leaser.take_limit("browser", 2, leases[1])
    assert not leaser.take_limit("browser", 2, leases[2])
    leases[0].release()
    assert leaser.take_limit("browser", 2, leases[2])
    for lease in leases:
        lease.release()


def test_ports_are_distinct_and_skip_ports_in_use(leaser: Leaser) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        lease = Lease()
        # A range of exactly the busy port and one more: only the free one can be leased.
        low = taken if taken < 65535 else taken - 1
        assert leaser.take_ports(1, (low, low + 1), lease)
        assert lease.ports
        assert taken not in lease.ports
        other = Lease()
        assert not leaser.take_ports(1, (low, low + 1), other)
        lease.release()


HOLDER = r"""
import sys, time
from pathlib import Path
from pytest_runset.resources.leases import Lease, Leaser
lease = Lease()
assert Leaser(Path(sys.argv[1])).take_persona(["alice"], lease)
print("held", flush=True)
time.sleep(600)
"""


def test_leases_hold_across_processes_and_die_with_their_holder(
    leaser: Leaser, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(leaser.lock_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        lease = Lease()
        assert not leaser.take_persona(["alice"], lease)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        # No stale lock: the kernel dropped it with the process.
        assert wait_for(lambda: leaser.take_persona(["alice"], lease), 5)
        lease.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

"""Live runs of the host: a later session cleans up after a dead one, never a live one."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from pytest_runset.resources import run_registry
from pytest_runset.resources.run_registry import reap_dead_runs, register


def test_a_live_registration_is_left_alone(tmp_path: Path) -> None:
    live = register(tmp_path, "run-a.k", "run-a", ["/nonexistent/group"])
    cleaned: list[str] = []
    try:
        found = reap_dead_runs(
            tmp_path, "other", lambda cookies, dirs: cleaned.append(str(cookies)) or 0
        )
        assert found == []
        assert cleaned == []
    finally:
        live.close()


def test_a_dead_registration_is_cleaned_once(tmp_path: Path) -> None:
    dead = register(tmp_path, "run-b.k", "run-b", ["/sys/fs/cgroup/x"])
    # The holder dies: its descriptor (and lock) go away, the file stays.
    os.close(dead.fd)
    calls: list[tuple[str | None, list[str]]] = []

    def clean(cookies: str | None, dirs: list[str]) -> int:
        calls.append((cookies, dirs))
        return 3

    assert reap_dead_runs(tmp_path, "other", clean) == [("run-b", 3)]
    assert calls == [(str(tmp_path / "runs" / "run-b.k.cookies"), ["/sys/fs/cgroup/x"])]
    assert reap_dead_runs(tmp_path, "other", clean) == []


def test_the_same_run_waits_for_a_watchdog_that_still_cleans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_registry, "SAME_RUN_WAIT_S", 0.3)
    held = register(tmp_path, "run-c.k", "run-c", [])
    try:
        # Another holder of the lock (the dead controller's watchdog) keeps it.
        assert reap_dead_runs(tmp_path, "run-c.k", lambda cookies, dirs: 1) == []
        with pytest.raises(OSError, match="live session"):
            register(tmp_path, "run-c.k", "run-c", [])
    finally:
        held.close()
    again = register(tmp_path, "run-c.k", "run-c", [])
    again.close()


def test_a_hostile_registration_is_not_trusted(tmp_path: Path) -> None:
    directory = tmp_path / "runs"
    directory.mkdir()
    (directory / "evil.json").write_text('{"run_id": 5, "cgroups": "/"}', encoding="utf-8")
    target = tmp_path / "target.json"
    target.write_text("{}", encoding="utf-8")
    (directory / "link.json").symlink_to(target)
    calls: list[str] = []
    reap_dead_runs(tmp_path, "other", lambda cookies, dirs: calls.append(str(cookies)) or 0)
    assert calls == []
    assert target.exists()


def test_registration_holds_an_exclusive_lock(tmp_path: Path) -> None:
    held = register(tmp_path, "run-d.k", "run-d", [])
    try:
        fd = os.open(held.path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        held.close()
    assert not held.path.exists()

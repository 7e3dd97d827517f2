"""The live-run control channel: requests as files in the run directory, the pause clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_runset.engine.supervision import AttemptWatch, GlobalDeadline, Supervision
from pytest_runset.session.live_control import (
    RunControl,
    control_run,
    request,
    requested_pause,
    requested_stop,
)


def test_requests_are_states_every_reader_sees(tmp_path: Path) -> None:
    assert not requested_pause(tmp_path)
    request(tmp_path, "pause", drain=False)
    assert requested_pause(tmp_path)
    assert (tmp_path / "control").stat().st_mode & 0o777 == 0o700
    request(tmp_path, "unpause", drain=False)
    assert not requested_pause(tmp_path)
    request(tmp_path, "pause", drain=False)
    request(tmp_path, "stop", drain=True)
    assert requested_stop(tmp_path) == "drain"
    # A paused run told to stop can.
    assert not requested_pause(tmp_path)


def test_the_pause_clock_counts_only_paused_time(tmp_path: Path) -> None:
    control = RunControl([tmp_path], "r1")
    request(tmp_path, "pause", drain=False)
    control.poll(now=100.0)
    assert control.paused
    request(tmp_path, "unpause", drain=False)
    control.poll(now=100.05)  # polled too soon: nothing changes yet
    assert control.paused
    control.poll(now=107.0)
    assert not control.paused
    assert control.total_paused_s(now=200.0) == pytest.approx(7.0)


def test_ctrl_z_pauses_like_the_file(tmp_path: Path) -> None:
    control = RunControl([tmp_path], "r1")
    control.pause_from_signal(True)
    control.poll(now=10.0)
    assert control.paused
    control.pause_from_signal(False)
    control.poll(now=12.5)
    assert not control.paused
    assert control.paused_s == pytest.approx(2.5)


def test_paused_time_moves_backstops_and_the_global_deadline() -> None:
    supervision = Supervision(margin=5.0, deadline=GlobalDeadline(at=1000.0, timeout_s=60.0))
    watch = AttemptWatch(dispatched_at=0.0, timeout_s=10.0, kill_grace_s=1.0, margin=5.0)
    assert watch.backstop == 16.0
    supervision.pause(now=10.0)
    assert supervision.paused
    assert not supervision.global_due(now=5000.0)
    assert supervision.next_wakeup([watch], now=20.0, longest=0.25) == 0.25
    assert supervision.unpause(now=17.0, watches=[watch]) == pytest.approx(7.0)
    assert watch.backstop == pytest.approx(23.0)
    assert supervision.deadline is not None
    assert supervision.deadline.at == pytest.approx(1007.0)


def test_a_stalled_controller_forgives_its_workers() -> None:
    supervision = Supervision(margin=5.0)
    watch = AttemptWatch(dispatched_at=0.0, timeout_s=10.0, kill_grace_s=1.0, margin=5.0)
    supervision.forgive(30.0, [watch])
    assert not watch.overdue(40.0)
    assert watch.overdue(46.0)


def test_controlling_a_run_that_is_not_running_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not running"):
        control_run(tmp_path, "pause")
    lines, code = control_run(tmp_path, "status")
    assert (lines, code) == ([], 0)
    with pytest.raises(ValueError, match="no such run"):
        control_run(tmp_path / "missing", "pause")


def test_another_users_run_cannot_be_controlled(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("changing a directory's owner needs root")
    os.chown(tmp_path, 12345, 12345)
    with pytest.raises(ValueError, match="only its owner"):
        control_run(tmp_path, "stop")

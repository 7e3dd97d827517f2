"""The journal syncer: fsyncs on its own thread and says how far the journal is durable."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest

from pytest_runset.results.report import RunDirectory
from pytest_runset.results.syncer import JournalSyncer


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDirectory:
    directory = RunDirectory(tmp_path / "out", "run-1")
    directory.open()
    yield directory
    directory.close()


def test_a_request_is_answered_once_the_lines_are_durable(run_dir: RunDirectory) -> None:
    answers: queue.Queue[tuple[int, str]] = queue.Queue()
    syncer = JournalSyncer([run_dir], lambda upto, problem: answers.put((upto, problem)))
    try:
        run_dir.journal({"event": "flow", "name": "a"}, sync=False)
        run_dir.journal({"event": "flow", "name": "b"}, sync=False)
        syncer.request(2)
        assert answers.get(timeout=30) == (2, "")
        # An older request is already served: nothing more happens.
        syncer.request(1)
        with pytest.raises(queue.Empty):
            answers.get(timeout=0.2)
        run_dir.journal({"event": "flow", "name": "c"}, sync=False)
        syncer.request(3)
        assert answers.get(timeout=30) == (3, "")
    finally:
        syncer.close()
    lines = (run_dir.path / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3


def test_requests_during_an_fsync_are_served_together(run_dir: RunDirectory) -> None:
    answers: queue.Queue[tuple[int, str]] = queue.Queue()
    syncer = JournalSyncer([run_dir], lambda upto, problem: answers.put((upto, problem)))
    try:
        for number in range(1, 51):
            run_dir.journal({"event": "flow", "n": number}, sync=False)
            syncer.request(number)
        seen = [answers.get(timeout=30)[0]]
        while seen[-1] < 50:
            seen.append(answers.get(timeout=30)[0])
    finally:
        syncer.close()
    assert seen == sorted(seen)
    assert len(seen) <= 50


def test_an_fsync_problem_is_reported_not_raised(run_dir: RunDirectory) -> None:
    answers: queue.Queue[tuple[int, str]] = queue.Queue()
    syncer = JournalSyncer([run_dir], lambda upto, problem: answers.put((upto, problem)))
    try:
        run_dir.journal({"event": "flow"}, sync=False)
        # A journal that can no longer be synced: fsync of /dev/null fails (EINVAL).
        assert run_dir._fd is not None
        os.close(run_dir._fd)
        run_dir._fd = os.open(os.devnull, os.O_RDONLY)
        syncer.request(1)
        upto, problem = answers.get(timeout=30)
    finally:
        syncer.close()
    assert upto == 1
    assert problem


def test_close_stops_an_idle_syncer_at_once(run_dir: RunDirectory) -> None:
    syncer = JournalSyncer([run_dir], lambda upto, problem: None)
    syncer.close()
    assert not syncer._thread.is_alive()

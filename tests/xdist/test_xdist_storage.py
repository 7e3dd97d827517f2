"""The xdist controller's side of a storage error: the session stops once, as interrupted."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_runset.results.report import RunDirectory
from pytest_runset.xdist.controller import XdistRun


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[RunDirectory]:
    directory = RunDirectory(tmp_path / "out", "r1")
    directory.open()
    yield directory
    directory.close()


def test_the_xdist_controller_stops_the_session_once_on_a_storage_error(
    run_dir: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard: list[str] = []
    hook = SimpleNamespace(pytest_runset_flow_finished=lambda config, result: heard.append(1))
    config = SimpleNamespace(hook=hook, rootpath=run_dir.path)
    xrun = XdistRun(config, {}, "run-9")  # type: ignore[arg-type]
    xrun.runs["k"] = SimpleNamespace(entries={}, directory=run_dir)  # type: ignore[assignment]
    shutil.rmtree(run_dir.path)
    entry: Any = {"slug": "a", "name": "a", "status": "passed"}

    with pytest.raises(pytest.Session.Interrupted) as info:
        xrun._record("k", entry)
    assert str(info.value) == (
        f"runset: cannot write {run_dir.journal_path}: it was deleted while the run was writing "
        "it (No such file or directory); running flows stopped; the run's journal is gone, so "
        "run the flows again"
    )
    # Reports that still arrive while xdist stops its workers are recorded, not raised again.
    xrun._record("k", {**entry, "slug": "b"})
    assert sorted(xrun.runs["k"].entries) == ["a", "b"]
    assert heard == []

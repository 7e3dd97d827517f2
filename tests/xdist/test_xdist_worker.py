"""The xdist worker's own parts that need no xdist: its slot and the controller's notes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_runset.engine.supervision import SERVICE_FAILED_NAME
from pytest_runset.xdist.supervised import service_failed as _service_failed
from pytest_runset.xdist.worker import worker_slot


def test_the_xdist_worker_id_gives_the_slot(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    config.workerinput = {"workerid": "gw7"}  # type: ignore[attr-defined]
    assert worker_slot(config) == (7, "gw7")


def test_a_service_failure_note_of_the_controller_fails_the_run_in_the_worker(
    tmp_path: Path,
) -> None:
    run = SimpleNamespace(
        service_error=None,
        service_tail="",
        service_log="",
        directory=SimpleNamespace(path=tmp_path),
    )
    assert not _service_failed(run)  # type: ignore[arg-type]
    note = tmp_path / SERVICE_FAILED_NAME
    note.parent.mkdir()
    note.write_text(
        json.dumps(
            {"message": "service 'db' exited with code 5", "tail": "boom", "log": "services/db.log"}
        )
    )
    assert _service_failed(run)  # type: ignore[arg-type]
    assert run.service_error == "service 'db' exited with code 5"
    assert (run.service_tail, run.service_log) == ("boom", "services/db.log")

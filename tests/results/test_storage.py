"""Storage errors of a run's own files: every journal line whole or absent, the first error
remembered, no temporary file left, a deleted run directory noticed, and one line to say so."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.results import report as report_module
from pytest_runset.results.report import (
    RunDirectory,
    RunDirError,
    json_bytes,
    read_journal,
    write_json_atomic,
)
from pytest_runset.results.storage import StorageError


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[RunDirectory]:
    directory = RunDirectory(tmp_path / "out", "r1")
    directory.open()
    yield directory
    directory.close()


def _journal_bytes(directory: RunDirectory) -> bytes:
    return (directory.path / "journal.jsonl").read_bytes()


def test_a_line_the_disk_takes_only_part_of_is_cut_back(
    run_dir: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir.journal({"event": "flow", "name": "kept"})
    before = _journal_bytes(run_dir)
    real_write = os.write
    calls: list[int] = []

    def disk_fills_up(fd: int, data: bytes) -> int:
        # As a full disk does: part of the line goes out, the next write fails.
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report_module.os, "write", disk_fills_up)
    with pytest.raises(StorageError) as info:
        run_dir.journal({"event": "flow", "name": "torn" * 50})

    assert str(info.value) == f"cannot write {run_dir.journal_path}: No space left on device"
    assert info.value.errno == errno.ENOSPC
    assert len(calls) == 2
    assert _journal_bytes(run_dir) == before
    assert [event["name"] for event in read_journal(run_dir.journal_path)[0]] == ["kept"]


def test_after_a_storage_error_the_journal_takes_no_more_lines(
    run_dir: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def io_error(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    run_dir.journal({"event": "flow", "name": "a"}, sync=False)
    monkeypatch.setattr(report_module.os, "fsync", io_error)
    with pytest.raises(StorageError, match="Input/output error") as first:
        run_dir.sync()
    monkeypatch.undo()
    # An fsync that failed once may "succeed" next time with the data lost: no more lines.
    with pytest.raises(StorageError) as again:
        run_dir.journal({"event": "flow", "name": "b"})
    assert again.value is first.value
    assert run_dir.failed is first.value
    assert b'"b"' not in _journal_bytes(run_dir)


def test_a_deleted_run_directory_is_noticed_at_the_next_sync(run_dir: RunDirectory) -> None:
    run_dir.journal({"event": "flow", "name": "a"})
    shutil.rmtree(run_dir.path)

    with pytest.raises(StorageError) as info:
        run_dir.journal({"event": "flow", "name": "b"})

    assert str(info.value) == (
        f"cannot write {run_dir.journal_path}: it was deleted while the run was writing it "
        "(No such file or directory)"
    )
    assert not info.value.resumable


def test_a_report_the_disk_refuses_leaves_no_temporary_file(
    run_dir: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report_module.os, "fsync", full)
    with pytest.raises(StorageError) as info:
        run_dir.write_report({"schema": "x", "flows": [{"name": "a"}]})

    assert str(info.value) == (
        f"cannot write {run_dir.path / 'report.json'}: No space left on device"
    )
    assert info.value.resumable
    leftovers = sorted(path.name for path in run_dir.path.iterdir())
    assert leftovers == ["journal.jsonl", "run.lock"]
    assert not (run_dir.output_root / "latest").exists()


def test_write_json_atomic_removes_its_temporary_file_on_any_failure(tmp_path: Path) -> None:
    class Unserializable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"a": 1, "b": Unserializable()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        write_json_atomic(tmp_path / "gone" / "x.json", {"a": 1})


def test_names_that_are_not_text_are_written_as_json_escapes(tmp_path: Path) -> None:
    # A directory named with Latin-1 bytes, as Python shows it: an escaped surrogate.
    name = "caf\udce9"
    data: dict[str, Any] = {"file": f"/x/{name}/run-set.toml", "flows": [{"name": "café"}]}

    write_json_atomic(tmp_path / "r.json", data)

    raw = (tmp_path / "r.json").read_bytes()
    assert "café".encode() in raw
    assert b"\\udce9" in raw
    assert json.loads(raw) == data
    assert json.loads(json_bytes(json.dumps(name, ensure_ascii=False))) == name


def test_a_journal_that_cannot_be_read_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").mkdir()
    with pytest.raises(RunDirError, match=r"^cannot read .*journal\.jsonl: Is a directory$"):
        read_journal(tmp_path / "journal.jsonl")
    assert read_journal(tmp_path / "missing.jsonl") == ([], 0)

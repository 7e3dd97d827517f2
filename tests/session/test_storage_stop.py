"""The one line that ends a session stopped by a storage error, and what it tells the user."""

from __future__ import annotations

import errno
from pathlib import Path

from pytest_runset.results.storage import StorageError
from pytest_runset.session.runs import storage_stop_line


def test_the_stop_line_says_what_to_do(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text("")
    error = StorageError(
        tmp_path / "report.json", "Disk quota exceeded", journal=journal, errno=errno.EDQUOT
    )

    assert storage_stop_line(error, "run-7") == (
        f"runset: cannot write {tmp_path / 'report.json'}: Disk quota exceeded; running flows "
        "stopped; fix it and run again with --runset-resume run-7"
    )
    journal.unlink()
    assert storage_stop_line(error, "run-7").endswith(
        "running flows stopped; the run's journal is gone, so run the flows again"
    )

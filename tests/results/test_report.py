"""Run directories, the journal, report.json, ``latest`` and the summary arithmetic."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CONTRACT_SUMMARY_FIELDS
from pytest_runset.results.report import (
    REPORT_SCHEMA,
    RunDirectory,
    RunDirError,
    build_report,
    check_run_id,
    iso_utc,
    new_run_id,
    run_status,
    summarize,
)

RUN_ID_SHAPE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[RunDirectory]:
    directory = RunDirectory(tmp_path / "out", "r1")
    directory.open()
    yield directory
    directory.close()


# -- run ids ---------------------------------------------------------------------------------------


def test_new_run_id_format() -> None:
    run_id = new_run_id()
    assert RUN_ID_SHAPE.match(run_id), run_id
    assert check_run_id(run_id) == run_id


def test_new_run_id_is_utc_and_sortable() -> None:
    moment = dt.datetime(2026, 11, 22, 6, 35, 1, tzinfo=dt.UTC)
    run_id = new_run_id(moment)
    assert run_id.startswith("20261122T063501Z-")
    later = new_run_id(moment + dt.timedelta(seconds=1))
    assert later > run_id
    now = dt.datetime.now(dt.UTC)
    stamp = dt.datetime.strptime(new_run_id()[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert abs((stamp - now).total_seconds()) < 3600  # UTC, not local time shifted


def test_new_run_ids_differ_within_one_second() -> None:
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [new_run_id(moment) for _ in range(200)]
    assert all(RUN_ID_SHAPE.match(run_id) for run_id in ids)
    # 16 random bits: a handful of birthday collisions at most, never a constant suffix.
    assert len(set(ids)) >= 190


@pytest.mark.parametrize(
    "bad", ["../x", "", "latest", "/abs", "a b", ".hidden", "-x", "a/b", "x\n", "é", "a" * 129]
)
def test_check_run_id_rejects(bad: str) -> None:
    with pytest.raises(RunDirError) as info:
        check_run_id(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("good", ["a", "run-1", "2026.11.22_x", "A" * 128])
def test_check_run_id_accepts(good: str) -> None:
    assert check_run_id(good) == good


def test_run_directory_rejects_a_bad_id_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(RunDirError):
        RunDirectory(tmp_path / "out", "../escape")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape").exists()


# -- run directories -------------------------------------------------------------------------------


def test_open_creates_the_directory_and_the_lock(tmp_path: Path) -> None:
    directory = RunDirectory(tmp_path / "deep" / "out", "r1")
    directory.open()
    try:
        assert directory.path == tmp_path / "deep" / "out" / "r1"
        assert directory.path.is_dir()
        assert (directory.path / "run.lock").exists()
        assert (directory.path / "journal.jsonl").exists()
    finally:
        directory.close()


def test_a_second_session_on_the_same_run_is_refused(run_dir: RunDirectory) -> None:
    second = RunDirectory(run_dir.output_root, run_dir.run_id)
    with pytest.raises(RunDirError, match="in use") as info:
        second.open()
    assert "\n" not in str(info.value)
    # The first session is unharmed.
    run_dir.journal({"event": "flow", "name": "still mine"})
    assert "still mine" in (run_dir.path / "journal.jsonl").read_text(encoding="utf-8")


def test_another_process_cannot_take_a_run_in_use(run_dir: RunDirectory) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from pytest_runset.results.report import RunDirectory, RunDirError\n"
        "try:\n"
        "    RunDirectory(Path(sys.argv[1]), sys.argv[2]).open()\n"
        "except RunDirError as exc:\n"
        "    print(exc); sys.exit(7)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(run_dir.output_root), run_dir.run_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 7, done.stderr
    assert "in use" in done.stdout


def test_reopening_a_finished_run_is_refused(tmp_path: Path) -> None:
    first = RunDirectory(tmp_path / "out", "r1")
    first.open()
    first.journal({"event": "flow", "name": "a"})
    first.close()
    again = RunDirectory(tmp_path / "out", "r1")
    with pytest.raises(RunDirError, match="already exists"):
        again.open()
    # Its results are kept as they are, and the refusal released the lock.
    lines = (tmp_path / "out" / "r1" / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["a"]
    with pytest.raises(RunDirError, match="already exists"):
        RunDirectory(tmp_path / "out", "r1").open()


def test_reopening_a_run_with_only_a_report_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out" / "r1").mkdir(parents=True)
    (tmp_path / "out" / "r1" / "report.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunDirError, match="already exists"):
        RunDirectory(tmp_path / "out", "r1").open()


def test_a_planted_symlink_is_not_a_run_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "r1").symlink_to(elsewhere)
    with pytest.raises(RunDirError):
        RunDirectory(tmp_path / "out", "r1").open()
    assert list(elsewhere.iterdir()) == []


def test_an_unwritable_output_directory_is_a_one_line_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root writes through permission bits; a path below a regular file fails for anyone.
        (tmp_path / "file").write_text("not a directory", encoding="utf-8")
        output = tmp_path / "file" / "out"
    else:
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o500)
        output = parent / "out"
    try:
        with pytest.raises(RunDirError) as info:
            RunDirectory(output, "r1").open()
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)
    message = str(info.value)
    assert "\n" not in message
    assert "r1" in message
    assert "Traceback" not in message


# -- the journal -----------------------------------------------------------------------------------


def test_journal_appends_one_durable_json_line_per_call(run_dir: RunDirectory) -> None:
    entries: list[dict[str, Any]] = [
        {"event": "flow", "name": "first", "status": "passed"},
        {"event": "flow", "name": "zweite Ä ✓", "status": "failed", "message": "a\nb"},
        {"event": "flow", "name": "third", "path": Path("/x")},
    ]
    for count, entry in enumerate(entries, start=1):
        run_dir.journal(entry)
        # Another reader sees the line as soon as journal() returns.
        with open(run_dir.path / "journal.jsonl", encoding="utf-8") as reader:
            lines = reader.read().splitlines()
        assert len(lines) == count
        assert json.loads(lines[-1])["name"] == entry["name"]
    decoded = [json.loads(line) for line in lines]
    assert decoded[1]["message"] == "a\nb"
    assert decoded[2]["path"] == "/x"


def test_journal_content_reaches_the_file_descriptor_level(run_dir: RunDirectory) -> None:
    run_dir.journal({"event": "flow", "name": "x"})
    # Read through a raw fd (no Python buffering anywhere on the reading side).
    fd = os.open(run_dir.path / "journal.jsonl", os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    assert data.endswith(b"\n")
    assert json.loads(data) == {"event": "flow", "name": "x"}


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_never_reach_the_journal_or_the_report(run_dir: RunDirectory) -> None:
    """The worker refuses such metrics; should one slip through anyway, it is written as null
    and the flow's entry says so, and the files stay JSON for strict readers."""
    entry = {
        "event": "flow",
        "name": "x",
        "metrics": {"a": float("nan"), "b": [1.0, float("inf")], "c": 2.5},
        "warnings": ["earlier"],
    }
    run_dir.journal(entry)
    line = _strict((run_dir.path / "journal.jsonl").read_text(encoding="utf-8"))
    assert line["metrics"] == {"a": None, "b": [1.0, None], "c": 2.5}
    assert line["warnings"] == [
        "earlier",
        "not a JSON number, written as null: metrics.a, metrics.b[1]",
    ]
    assert entry["warnings"] == ["earlier"]  # the caller's entry is left as it was
    target = run_dir.write_report(
        {"schema": REPORT_SCHEMA, "flows": [entry], "wall_s": float("nan")}
    )
    report = _strict(target.read_text(encoding="utf-8"))
    assert report["wall_s"] is None
    assert report["flows"][0]["metrics"]["b"] == [1.0, None]


# -- report.json and latest ------------------------------------------------------------------------


def test_write_report_is_atomic_and_points_latest(run_dir: RunDirectory) -> None:
    report = {"schema": REPORT_SCHEMA, "run_id": "r1", "flows": [{"name": "ü"}]}
    target = run_dir.write_report(report)
    assert target == run_dir.path / "report.json"
    assert json.loads(target.read_text(encoding="utf-8")) == report
    assert sorted(os.listdir(run_dir.path)) == [
        "journal.jsonl", "report.html", "report.json", "run.lock"
    ]  # fmt: skip
    latest = run_dir.output_root / "latest"
    assert latest.is_symlink()
    assert os.readlink(latest) == "r1"  # relative: the output tree can be moved
    assert (latest / "report.json").read_text(encoding="utf-8") == target.read_text(
        encoding="utf-8"
    )
    assert sorted(os.listdir(run_dir.output_root)) == ["latest", "r1"]


def test_latest_moves_to_the_newest_run(tmp_path: Path) -> None:
    output = tmp_path / "out"
    for run_id in ("first", "second"):
        directory = RunDirectory(output, run_id)
        directory.open()
        try:
            directory.write_report({"run_id": run_id})
        finally:
            directory.close()
    assert os.readlink(output / "latest") == "second"
    assert json.loads((output / "latest" / "report.json").read_text(encoding="utf-8")) == {
        "run_id": "second"
    }
    assert sorted(os.listdir(output)) == ["first", "latest", "second"]


def test_rewriting_the_report_replaces_it_whole(run_dir: RunDirectory) -> None:
    run_dir.write_report({"flows": ["x" * 10000]})
    run_dir.write_report({"flows": []})
    assert json.loads((run_dir.path / "report.json").read_text(encoding="utf-8")) == {"flows": []}
    assert not [name for name in os.listdir(run_dir.path) if name.endswith(".tmp")]


# -- summary and status ----------------------------------------------------------------------------

ALL_STATUSES = (
    "passed",
    "failed",
    "error",
    "timeout",
    "skipped",
    "xfailed",
    "xpassed",
    "interrupted",
    "not_run",
)


def _flow(status: str, duration: float | None = 1.0, flaky: bool = False) -> dict[str, Any]:
    return {"name": status, "status": status, "duration_s": duration, "flaky": flaky}


def test_summarize_counts_every_status() -> None:
    flows = [_flow(status) for status in ALL_STATUSES] + [_flow("passed"), _flow("failed")]
    summary = summarize(flows, wall_s=10.0, workers=2)
    assert summary["total"] == len(flows)
    expected = dict.fromkeys(ALL_STATUSES, 1)
    expected["passed"] = 2
    expected["failed"] = 2
    for status, count in expected.items():
        assert summary[status] == count, status


def test_summarize_empty_has_every_key_at_zero() -> None:
    summary = summarize([], wall_s=0.0, workers=4)
    for key in CONTRACT_SUMMARY_FIELDS:
        assert summary[key] == 0, key


def test_summarize_flaky_and_durations() -> None:
    flows = [
        _flow("passed", 4.0, flaky=True),
        _flow("passed", 1.0, flaky=True),
        _flow("failed", 2.0),
        _flow("not_run", None),
        _flow("skipped", 0.0),
    ]
    summary = summarize(flows, wall_s=5.0, workers=2)
    assert summary["flaky"] == 2
    assert summary["sum_duration_s"] == pytest.approx(7.0)
    # max(longest 4.0, 7.0 / 2)
    assert summary["lower_bound_s"] == pytest.approx(4.0)
    assert summary["parallelism_efficiency"] == pytest.approx(7.0 / (5.0 * 2))


def test_lower_bound_is_the_average_load_when_flows_are_even() -> None:
    flows = [_flow("passed", 3.0) for _ in range(4)]
    summary = summarize(flows, wall_s=6.0, workers=2)
    assert summary["lower_bound_s"] == pytest.approx(6.0)  # 12 / 2 > 3
    assert summary["parallelism_efficiency"] == pytest.approx(1.0)


def test_efficiency_floors_wall_at_one_millisecond() -> None:
    summary = summarize([_flow("passed", 0.002)], wall_s=0.0, workers=1)
    assert summary["parallelism_efficiency"] == pytest.approx(2.0)
    summary = summarize([_flow("passed", 0.002)], wall_s=0.0, workers=2)
    assert summary["parallelism_efficiency"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("statuses", "interrupted", "expected"),
    [
        (["passed", "skipped", "xfailed", "xpassed"], False, "passed"),
        ([], False, "passed"),
        (["passed", "failed"], False, "failed"),
        (["passed", "error"], False, "failed"),
        (["timeout"], False, "failed"),
        (["passed", "not_run"], False, "incomplete"),
        (["failed", "not_run"], False, "failed"),
        (["passed", "interrupted", "failed"], False, "interrupted"),
        (["passed"], True, "interrupted"),
    ],
)
def test_run_status(statuses: list[str], interrupted: bool, expected: str) -> None:
    assert run_status([_flow(status) for status in statuses], interrupted) == expected


def test_iso_utc() -> None:
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"


def test_build_report_has_every_contract_field() -> None:
    flows = [
        {**_flow("passed", 2.0), "slug": "a"},
        {**_flow("failed", 3.0), "slug": "b"},
        {**_flow("passed", 1.0, flaky=True), "slug": "c"},
    ]
    runset = {"name": "suite", "file": "/x/run-set.toml", "sha256": "ab" * 32}
    report = build_report(
        run_id="r1",
        runset=runset,
        flows=flows,
        started_at=1_700_000_000.0,
        finished_at=1_700_000_004.0,
        workers=2,
        interrupted=False,
    )
    assert report["schema"] == "pytest-runset/report@1"
    assert report["run_id"] == "r1"
    assert report["runset"] == runset
    assert set(report["runset"]) == {"name", "file", "sha256"}
    assert report["status"] == "failed"
    for key in ("started_at", "finished_at"):
        assert ISO_UTC.match(report[key]), report[key]
    started = dt.datetime.fromisoformat(report["started_at"].replace("Z", "+00:00"))
    assert started.timestamp() == pytest.approx(1_700_000_000.0)
    assert report["wall_s"] == pytest.approx(4.0)
    assert report["workers"] == 2
    assert report["flows"] == flows  # file order, as given
    summary = report["summary"]
    assert set(summary) >= CONTRACT_SUMMARY_FIELDS
    assert summary["total"] == 3
    assert summary["passed"] == 2
    assert summary["failed"] == 1
    assert summary["flaky"] == 1
    assert summary["sum_duration_s"] == pytest.approx(6.0)
    assert summary["lower_bound_s"] == pytest.approx(3.0)
    assert summary["parallelism_efficiency"] == pytest.approx(6.0 / (4.0 * 2))
    json.dumps(report)  # plain data


def test_build_report_with_a_clock_step_backwards_has_no_negative_wall() -> None:
    report = build_report(
        run_id="r1",
        runset={"name": "s", "file": "f", "sha256": ""},
        flows=[_flow("passed", 0.5)],
        started_at=100.0,
        finished_at=99.0,
        workers=1,
        interrupted=True,
    )
    assert report["wall_s"] == 0.0
    assert report["status"] == "interrupted"
    assert report["summary"]["parallelism_efficiency"] == pytest.approx(0.5 / 0.001)

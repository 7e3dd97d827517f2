"""A full disk and a run directory deleted under a run, on a real 2 MiB tmpfs: one line naming
the file and the error, running flows stopped, exit code 2, no torn journal line, no temporary
file, and ``--runset-resume`` finishes the run without running passed flows again."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, mounted for the test (root only) and unmounted after it."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # Lazy: a flow process that is still being reaped must not keep the mount busy.
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _journal_events(run_dir: Path) -> list[dict[str, object]]:
    """Every line of the journal, each of which must be a whole JSON object."""
    data = (run_dir / "journal.jsonl").read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    events = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert all(isinstance(event, dict) for event in events)
    return events


def _lines_naming_the_failure(result: pytest.RunResult) -> list[str]:
    return [
        line
        for line in result.outlines + result.errlines
        if "cannot write" in line and "running flows stopped" in line
    ]


def _no_traceback(result: pytest.RunResult) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output, output
    assert "INTERNALERROR" not in output, output


def _temporary_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.endswith(".tmp")]


# Counts its runs in counters/<flow> (outside the small disk), then does the flow's work.
_COUNT = 'echo run >> "$COUNTERS/$RUNSET_FLOW"; '
# Fills the disk on its first run only, so that the resumed run can pass.
_FILL = (
    'if [ "$(wc -l < "$COUNTERS/$RUNSET_FLOW")" -eq 1 ]; then '
    'head -c 4000000 /dev/zero > "$RUNSET_FLOW_DIR/big" || true; fi'
)


def _flows(names: list[str], command: str) -> str:
    return "".join(
        f'[[flows]]\nname = "{name}"\nshell = true\ncommand = {json.dumps(_COUNT + command)}\n'
        for name in names
    )


def test_a_full_disk_stops_the_run_in_one_line_and_resume_completes_it(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], small_disk: Path
) -> None:
    counters = pytester.path / "counters"
    counters.mkdir()
    before = [f"before {i}" for i in range(3)]
    after = [f"after {i}" for i in range(6)]
    write_runset(
        f"[runset]\nenv = {{ COUNTERS = {json.dumps(str(counters))} }}\n"
        + _flows(before, "echo fine")
        + _flows(["fill"], _FILL)
        + _flows(after, "echo some output; sleep 0.1")
    )
    options = ["--runset", "run-set.toml", "-n", "1", "--runset-output", str(small_disk)]

    full = pytester.runpytest_subprocess(*options, "--runset-run-id", "full")

    assert full.ret == 2, full.stdout.str()
    _no_traceback(full)
    [line] = _lines_naming_the_failure(full)
    run_dir = small_disk / "full"
    assert f"cannot write {run_dir}" in line
    assert "No space left on device" in line
    assert "--runset-resume full" in line
    events = _journal_events(run_dir)
    journaled_passed = {
        str(event["name"])
        for event in events
        if event.get("event") == "flow" and event.get("status") == "passed"
    }
    assert set(before) <= journaled_passed
    # The disk filled up before every flow could be journaled: the run really was cut short.
    assert not set(after) <= {str(event.get("name")) for event in events}
    assert _temporary_files(small_disk) == []

    (run_dir / "fill" / "big").unlink()
    resumed = pytester.runpytest_subprocess(*options, "--runset-resume", "full")

    assert resumed.ret == 0, resumed.stdout.str()
    _no_traceback(resumed)
    report = flows_by_name(load_report(run_dir))
    assert {name: flow["status"] for name, flow in report.items()} == dict.fromkeys(
        [*before, "fill", *after], "passed"
    )
    runs = {path.name: len(path.read_text().splitlines()) for path in counters.iterdir()}
    # Flows journaled as passed before the disk filled up were not run again.
    assert all(runs[name] == 1 for name in journaled_passed), runs
    assert all(runs[name] >= 1 for name in [*before, "fill", *after]), runs
    _journal_events(run_dir)
    assert _temporary_files(small_disk) == []


def test_a_run_directory_deleted_mid_run_stops_the_run_in_one_line(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], small_disk: Path
) -> None:
    write_runset(
        '[[flows]]\nname = "first"\ncommand = ["true"]\n'
        '[[flows]]\nname = "deleter"\nshell = true\ncommand = \'rm -rf "$RUNSET_RUN_DIR"\'\n'
        + "".join(f'[[flows]]\nname = "later {i}"\ncommand = ["sleep", "0.2"]\n' for i in range(4))
    )

    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-n", "1", "--runset-output", str(small_disk),
        "--runset-run-id", "gone",
    )  # fmt: skip

    assert result.ret == 2, result.stdout.str()
    _no_traceback(result)
    [line] = _lines_naming_the_failure(result)
    assert f"cannot write {small_disk / 'gone' / 'journal.jsonl'}: it was deleted" in line
    # No journal is left to resume from: the line does not offer what cannot work.
    assert "--runset-resume" not in line
    assert "run the flows again" in line
    assert _temporary_files(small_disk) == []

"""Duration history in pytest's cache: what it records, how it estimates, and longest-first."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report
from pytest_runset.session.history import CACHE_KEY, COMPLETED, KEEP, clean, estimate, updated


def entry(nodeid: str, status: str, duration: object) -> dict[str, object]:
    return {"nodeid": nodeid, "status": status, "duration_s": duration}


def test_estimate_is_the_median_so_one_outlier_does_not_move_it() -> None:
    assert estimate([10.0, 10.2, 9.9, 500.0, 10.1]) == pytest.approx(10.1)
    assert estimate([3.0]) == 3.0
    assert estimate([1.0, 3.0]) == 2.0


def test_only_flows_that_ran_to_completion_are_recorded() -> None:
    entries = [
        entry("f.toml::passed", "passed", 1.0),
        entry("f.toml::failed", "failed", 2.0),
        entry("f.toml::xfailed", "xfailed", 3.0),
        entry("f.toml::xpassed", "xpassed", 4.0),
        entry("f.toml::timeout", "timeout", 60.0),
        entry("f.toml::error", "error", 0.1),
        entry("f.toml::skipped", "skipped", 0.0),
        entry("f.toml::interrupted", "interrupted", 5.0),
        entry("f.toml::not_run", "not_run", 0.0),
    ]
    history = updated({}, entries)
    assert set(history) == {f"f.toml::{status}" for status in COMPLETED}
    assert history["f.toml::failed"] == [2.0]


def test_the_last_samples_are_kept_and_the_input_is_not_changed() -> None:
    before = {"f.toml::a": [1.0, 2.0]}
    history = before
    for value in range(3, 3 + KEEP + 2):
        history = updated(history, [entry("f.toml::a", "passed", float(value))])
    assert before == {"f.toml::a": [1.0, 2.0]}
    assert len(history["f.toml::a"]) == KEEP
    assert history["f.toml::a"][-1] == float(2 + KEEP + 2)


def test_bad_durations_and_entries_without_a_nodeid_are_ignored() -> None:
    entries = [
        entry("f.toml::nan", "passed", math.nan),
        entry("f.toml::negative", "passed", -1.0),
        entry("f.toml::text", "passed", "1.0"),
        entry("f.toml::none", "passed", None),
        entry("f.toml::bool", "passed", True),
        {"status": "passed", "duration_s": 1.0},
    ]
    assert updated({}, entries) == {}


def test_a_malformed_cache_is_dropped_not_fatal() -> None:
    assert clean(None) == {}
    assert clean([1, 2]) == {}
    assert clean({"a": "fast", "b": [1, "x", -2, math.inf, 2.5], "c": [], "d": [True]}) == {
        "b": [1.0, 2.5]
    }


SKEWED = """
[runset]
name = "skewed"
[[flows]]
name = "short"
command = ["sleep", "0.05"]
[[flows]]
name = "medium"
command = ["sleep", "0.4"]
[[flows]]
name = "long"
command = ["sleep", "0.9"]
[[flows]]
name = "broken"
command = ["sh", "-c", "sleep 0.6; exit 3"]
[[flows]]
name = "slow timeout"
command = ["sleep", "30"]
timeout = "1.5s"
kill_grace = "0.2s"
"""


def cached_history(pytester: pytest.Pytester) -> dict[str, list[float]]:
    path = pytester.path / ".pytest_cache" / "v" / Path(CACHE_KEY)
    data: dict[str, list[float]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_second_run_dispatches_longest_first_and_reports_in_file_order(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "run-set.toml").write_text(SKEWED, encoding="utf-8")
    first = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-workers", "1", "--runset-run-id", "one"
    )
    assert first.ret == 1, first.stdout.str()
    history = cached_history(pytester)
    # The timeout taught nothing: its duration is the timeout, not the flow's.
    assert set(history) == {
        "run-set.toml::short",
        "run-set.toml::medium",
        "run-set.toml::long",
        "run-set.toml::broken",
    }
    report = load_report(pytester.path / "runset-results" / "one")
    by_start = [flow["name"] for flow in sorted(report["flows"], key=lambda f: f["started_s"])]
    # Without history: file order.
    assert by_start == ["short", "medium", "long", "broken", "slow timeout"]

    second = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-workers", "1", "--runset-run-id", "two"
    )
    assert second.ret == 1, second.stdout.str()
    report = load_report(pytester.path / "runset-results" / "two")
    assert [flow["name"] for flow in report["flows"]] == [
        "short",
        "medium",
        "long",
        "broken",
        "slow timeout",
    ]
    by_start = [flow["name"] for flow in sorted(report["flows"], key=lambda f: f["started_s"])]
    # The flow without history first (it may be the longest), then longest first.
    assert by_start == ["slow timeout", "long", "broken", "medium", "short"]
    assert len(cached_history(pytester)["run-set.toml::long"]) == 2
    assert flows_by_name(report)["long"]["status"] == "passed"


def test_without_the_cache_plugin_there_is_no_history_and_no_error(
    pytester: pytest.Pytester,
) -> None:
    without_timeout = SKEWED.split('[[flows]]\nname = "slow', maxsplit=1)[0]
    (pytester.path / "run-set.toml").write_text(without_timeout, encoding="utf-8")
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-workers", "2", "-p", "no:cacheprovider"
    )
    assert result.ret == 1, result.stdout.str()
    assert not (pytester.path / ".pytest_cache").exists()


def test_a_corrupt_history_file_is_ignored(pytester: pytest.Pytester) -> None:
    (pytester.path / "run-set.toml").write_text(
        '[runset]\nname = "x"\n[[flows]]\nname = "a"\ncommand = ["true"]\n', encoding="utf-8"
    )
    target = pytester.path / ".pytest_cache" / "v" / Path(CACHE_KEY)
    target.parent.mkdir(parents=True)
    target.write_text("{not json", encoding="utf-8")
    result = pytester.runpytest_subprocess("--runset", "run-set.toml")
    assert result.ret == 0, result.stdout.str()
    assert list(cached_history(pytester)) == ["run-set.toml::a"]

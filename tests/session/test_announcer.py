"""The announcer's contract: pytest and every plugin hear of a flow only once its journal line
is on disk, whether it passed, failed, was skipped or ended together with others."""

from __future__ import annotations

import json

import pytest

# A plugin that, at the moment it hears of a flow, reads the journal from disk (a fresh file
# handle: what a crash right now would leave) and records whether the flow's line is there.
CONFTEST = """
import json, pathlib

SEEN = []

def _on_disk(slug):
    journal = pathlib.Path("runset-results", "run", "journal.jsonl")
    lines = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return any(line.get("event") == "flow" and line.get("slug") == slug for line in lines)

def pytest_runset_flow_finished(config, result):
    SEEN.append(("hook", result["slug"], _on_disk(result["slug"])))

def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.skipped):
        slug = report.nodeid.split("::")[-1]
        SEEN.append(("report", slug, _on_disk(slug)))

def pytest_unconfigure(config):
    pathlib.Path("seen.json").write_text(json.dumps(SEEN))
"""

RUNSET = """
[[flows]]
name = "passes"
command = ["true"]

[[flows]]
name = "fails"
command = ["false"]

[[flows]]
name = "skipped"
command = ["true"]
skip = "not today"

[[flows]]
name = "also passes"
command = ["true"]

[[flows]]
name = "together 1"
command = ["sleep", "0.3"]

[[flows]]
name = "together 2"
command = ["sleep", "0.3"]
"""


def test_every_flow_is_on_disk_before_pytest_or_a_plugin_hears_of_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".toml", **{"run-set": RUNSET})
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-n", "3", "--runset-run-id", "run", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    seen = json.loads((pytester.path / "seen.json").read_text())
    slugs = {"passes", "fails", "skipped", "also-passes", "together-1", "together-2"}
    assert {slug for kind, slug, _ in seen if kind == "hook"} == slugs
    assert {slug for kind, slug, _ in seen if kind == "report"} == slugs
    assert [entry for entry in seen if not entry[2]] == []

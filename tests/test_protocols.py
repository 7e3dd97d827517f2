"""Flows as tests for the tools that consume pytest: IDEs (collect-only, nodeids, TeamCity
messages), pytest-json-report, pytest-reportlog, junitxml read back by junitparser, --lf/--ff.

Every run goes through a real pytest subprocess, on the pool (two workers), with real command
flows.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from junitparser import Failure, JUnitXml, Skipped, TestCase
from junitparser.junitparser import Properties

from conftest import flows_by_name, load_report

# One flow of every outcome a tool must tell apart; "checkout" fails on both of its attempts.
FLOWS = """
[runset]
name = "protocols"
[[flows]]
name = "login"
command = ["true"]
[[flows]]
name = "checkout"
command = ["sh", "-c", "echo payment declined >&2; exit 1"]
retries = 1
[[flows]]
name = "payments"
command = ["sh", "-c", "exit 77"]
[[flows]]
name = "search"
command = ["true"]
skip = "index not built"
"""
NODEIDS = {
    "run-set.toml::login",
    "run-set.toml::checkout",
    "run-set.toml::payments",
    "run-set.toml::search",
}
POOL = ("--runset-workers", "2")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*POOL, *args)


# -- collect-only and nodeids (VS Code's discovery and "run this test") --------------------
def test_collect_only_lists_exactly_the_flows_and_a_listed_nodeid_runs_only_that_flow(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    listed = run(pytester, "--collect-only", "-q")
    assert listed.ret == 0, listed.stdout.str()
    printed = {line for line in listed.stdout.lines if "::" in line}
    assert printed == NODEIDS
    assert not (pytester.path / "runset-results").exists()

    # As an IDE runs one test: the nodeid exactly as discovery printed it.
    one = run(pytester, "run-set.toml::login", "--runset-run-id", "one")
    assert one.ret == 0, one.stdout.str()
    one.assert_outcomes(passed=1)
    assert [
        flow["nodeid"] for flow in load_report(pytester.path / "runset-results" / "one")["flows"]
    ] == ["run-set.toml::login"]

    # VS Code passes absolute paths and its own --rootdir, from anywhere.
    elsewhere = pytester.mkdir("elsewhere")
    absolute = _run_in(pytester, elsewhere, f"{pytester.path / 'run-set.toml'}::checkout")
    assert absolute.ret == 1, absolute.stdout.str()
    absolute.assert_outcomes(failed=1)
    report = load_report(pytester.path / "runset-results" / "abs")
    assert [flow["nodeid"] for flow in report["flows"]] == ["run-set.toml::checkout"]


def _run_in(pytester: pytest.Pytester, cwd: Path, target: str) -> pytest.RunResult:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return pytester.runpytest_subprocess(
            *POOL,
            "--rootdir",
            str(pytester.path),
            target,
            "--runset-run-id",
            "abs",
            "--runset-retries",
            "0",
        )
    finally:
        os.chdir(old)


# -- TeamCity service messages (PyCharm's protocol) ---------------------------------------
_MESSAGE = re.compile(r"##teamcity\[(\w+)((?:\s+\w+='(?:[^'|]|\|.)*')*)\s*\]")
_ATTRIBUTE = re.compile(r"(\w+)='((?:[^'|]|\|.)*)'")
_UNESCAPE = {"n": "\n", "r": "\r", "'": "'", "|": "|", "[": "[", "]": "]"}


def teamcity_messages(output: str) -> list[tuple[str, dict[str, str]]]:
    messages = []
    for match in _MESSAGE.finditer(output):
        attrs = {
            key: re.sub(r"\|(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), value)
            for key, value in _ATTRIBUTE.findall(match.group(2))
        }
        messages.append((match.group(1), attrs))
    return messages


@pytest.mark.parametrize("activation", ["--teamcity", "TEAMCITY_VERSION"])
def test_teamcity_messages_report_each_flow_once_with_its_outcome(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    activation: str,
) -> None:
    write_runset(FLOWS)
    args: list[str] = []
    if activation == "--teamcity":
        args.append("--teamcity")
    else:
        monkeypatch.setenv("TEAMCITY_VERSION", "2024.3")
    result = run(pytester, *args)
    assert result.ret == 1, result.stdout.str()
    messages = teamcity_messages(result.stdout.str())
    per_flow: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for kind, attrs in messages:
        if "name" in attrs:
            per_flow.setdefault(attrs["name"].rsplit(".", 1)[-1], []).append((kind, attrs))
    assert set(per_flow) == {"login", "checkout", "payments", "search"}
    for name, events in per_flow.items():
        kinds = [kind for kind, _ in events]
        assert kinds.count("testStarted") == 1, (name, kinds)
        assert kinds.count("testFinished") == 1, (name, kinds)
        assert kinds[0] == "testStarted", (name, kinds)
        assert kinds[-1] == "testFinished", (name, kinds)
    assert [kind for kind, _ in per_flow["login"]] == ["testStarted", "testFinished"]
    failed = [attrs for kind, attrs in per_flow["checkout"] if kind == "testFailed"]
    assert len(failed) == 1
    assert "failed: exit code 1: payment declined" in failed[0]["details"]
    assert "payment declined" in failed[0]["details"].split("last lines of", 1)[1]
    for name, reason in (("payments", "exit code 77"), ("search", "index not built")):
        ignored = [attrs for kind, attrs in per_flow[name] if kind == "testIgnored"]
        assert len(ignored) == 1, per_flow[name]
        assert reason in ignored[0]["message"]
    counts = [attrs["count"] for kind, attrs in messages if kind == "testCount"]
    assert counts == ["4"]


# -- pytest-json-report and pytest-reportlog ------------------------------------------------
def test_json_report_sees_flows_as_tests_with_their_outcomes(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    result = run(pytester, "--json-report", "--json-report-file=tests.json")
    assert result.ret == 1, result.stdout.str()
    data = json.loads((pytester.path / "tests.json").read_text())
    assert data["exitcode"] == 1
    assert data["summary"] == {
        "passed": 1,
        "failed": 1,
        "skipped": 2,
        "total": 4,
        "collected": 4,
    }
    tests = {test["nodeid"]: test for test in data["tests"]}
    assert {nodeid: test["outcome"] for nodeid, test in tests.items()} == {
        "run-set.toml::login": "passed",
        "run-set.toml::checkout": "failed",
        "run-set.toml::payments": "skipped",
        "run-set.toml::search": "skipped",
    }
    crash = tests["run-set.toml::checkout"]["call"]["crash"]
    assert crash["message"] == "failed: exit code 1: payment declined"
    assert crash["path"] == "run-set.toml"
    assert "payment declined" in tests["run-set.toml::checkout"]["call"]["longrepr"]
    properties = _merged(tests["run-set.toml::checkout"]["user_properties"])
    assert properties["runset_attempts"] == 2
    assert properties["runset_status"] == "failed"
    assert "exit code 77" in tests["run-set.toml::payments"]["call"]["longrepr"]
    assert "index not built" in tests["run-set.toml::search"]["setup"]["longrepr"]


def _merged(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for pair in pairs:
        merged.update(pair)
    return merged


def test_report_log_sees_flows_as_tests_with_their_worker(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    result = run(pytester, "--report-log=log.jsonl")
    assert result.ret == 1, result.stdout.str()
    lines = [json.loads(line) for line in (pytester.path / "log.jsonl").read_text().splitlines()]
    reports = [line for line in lines if line["$report_type"] == "TestReport"]
    by_flow: dict[str, dict[str, dict[str, Any]]] = {}
    for report in reports:
        by_flow.setdefault(report["nodeid"], {})[report["when"]] = report
    assert set(by_flow) == NODEIDS
    outcomes = {
        nodeid: (phases["call"] if "call" in phases else phases["setup"])["outcome"]
        for nodeid, phases in by_flow.items()
    }
    assert outcomes == {
        "run-set.toml::login": "passed",
        "run-set.toml::checkout": "failed",
        "run-set.toml::payments": "skipped",
        "run-set.toml::search": "skipped",
    }
    for nodeid in ("run-set.toml::login", "run-set.toml::checkout", "run-set.toml::payments"):
        assert by_flow[nodeid]["call"]["worker_id"] in ("gw0", "gw1")
        assert by_flow[nodeid]["call"]["location"][0] == "run-set.toml"
    failure = by_flow["run-set.toml::checkout"]["call"]["longrepr"]
    assert "payment declined" in json.dumps(failure)
    teardown = dict(by_flow["run-set.toml::checkout"]["teardown"]["user_properties"])
    assert teardown["runset_status"] == "failed"
    assert lines[-1]["$report_type"] == "SessionFinish"
    assert lines[-1]["exitstatus"] == 1


# -- junitxml, read back by junitparser ---------------------------------------------------
def _properties(case: TestCase) -> dict[str, str]:
    found = case.child(Properties)
    return {prop.name: prop.value for prop in found} if found is not None else {}


def test_junitxml_read_by_junitparser_has_one_case_per_flow_with_runset_properties(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    result = run(pytester, "--junitxml", "junit.xml", "--runset-run-id", "ju")
    assert result.ret == 1, result.stdout.str()
    xml = JUnitXml.fromfile(str(pytester.path / "junit.xml"))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.skipped, suite.errors) == (4, 1, 2, 0)
    cases = {case.name: case for case in suite}
    assert set(cases) == {"login", "checkout", "payments", "search"}
    assert {case.classname for case in cases.values()} == {"run-set.toml"}

    run_dir = pytester.path / "runset-results" / "ju"
    report = flows_by_name(load_report(run_dir))
    for name, case in cases.items():
        props = _properties(case)
        assert {"runset_slug_dir", "runset_attempts", "runset_status"} <= set(props), name
        assert props["runset_status"] == report[name]["status"]
        assert props["runset_attempts"] == str(report[name]["attempts"])
    assert _properties(cases["checkout"])["runset_attempts"] == "2"
    for name in ("login", "checkout", "payments"):
        slug_dir = Path(_properties(cases[name])["runset_slug_dir"])
        # The slug dir of the last attempt, with that attempt's logs in it.
        assert slug_dir == run_dir / report[name]["dir"]
        assert (slug_dir / "stdout.log").is_file()
    assert _properties(cases["checkout"])["runset_slug_dir"].endswith("checkout-retry1")
    assert _properties(cases["search"]) == {
        "runset_slug_dir": "",
        "runset_attempts": "0",
        "runset_status": "skipped",
        "runset_flaky": "False",
    }

    assert cases["login"].is_passed
    (failure,) = cases["checkout"].result
    assert isinstance(failure, Failure)
    assert failure.message == "failed: exit code 1: payment declined"
    assert "last lines of checkout-retry1/stderr.log" in (failure.text or "")
    for name, reason in (("payments", "exit code 77"), ("search", "index not built")):
        (skipped,) = cases[name].result
        assert isinstance(skipped, Skipped)
        assert reason in (skipped.message or "")
    assert float(cases["login"].time) >= 0.0


# -- --lf and --ff --------------------------------------------------------------------------
RERUN = """
[runset]
name = "rerun"
[[flows]]
name = "fast-a"
command = ["true"]
[[flows]]
name = "fast-b"
command = ["true"]
[[flows]]
name = "fast-c"
command = ["true"]
[[flows]]
name = "broken-x"
command = ["sh", "-c", "exit 1"]
[[flows]]
name = "broken-y"
command = ["sh", "-c", "exit 1"]
"""
# Records the order in which flows are dispatched (pytest_runtest_logstart).
START_ORDER = """
def pytest_runtest_logstart(nodeid, location):
    with open("started.txt", "a") as handle:
        handle.write(nodeid + "\\n")
"""


def test_last_failed_runs_only_the_failed_flows(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(RERUN)
    assert run(pytester, "--runset-run-id", "first").ret == 1
    again = run(
        pytester, "--lf", "--runset-run-id", "lf", "--json-report", "--json-report-file=lf.json"
    )
    assert again.ret == 1, again.stdout.str()
    again.assert_outcomes(failed=2)
    again.stdout.fnmatch_lines(["run-last-failure: rerun previous 2 failures*"])
    ran = {test["nodeid"] for test in json.loads((pytester.path / "lf.json").read_text())["tests"]}
    assert ran == {"run-set.toml::broken-x", "run-set.toml::broken-y"}
    report = load_report(pytester.path / "runset-results" / "lf")
    assert {flow["name"] for flow in report["flows"]} == {"broken-x", "broken-y"}


def test_failed_first_starts_the_failed_flows_before_the_others(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(RERUN)
    pytester.makeconftest(START_ORDER)
    assert run(pytester, "--runset-run-id", "first").ret == 1
    started = pytester.path / "started.txt"
    first_order = started.read_text().split()
    assert first_order[:3] == [
        "run-set.toml::fast-a",
        "run-set.toml::fast-b",
        "run-set.toml::fast-c",
    ]
    started.unlink()

    again = run(pytester, "--ff", "--runset-run-id", "ff", "-v")
    assert again.ret == 1, again.stdout.str()
    again.assert_outcomes(passed=3, failed=2)
    order = started.read_text().split()
    assert set(order[:2]) == {"run-set.toml::broken-x", "run-set.toml::broken-y"}
    assert len(order) == 5
    report = load_report(pytester.path / "runset-results" / "ff")
    earliest = min(report["flows"], key=lambda flow: flow["started_s"])
    assert earliest["name"].startswith("broken-")
    # Reports keep file order whatever the dispatch order.
    assert [flow["name"] for flow in report["flows"]] == [
        "fast-a",
        "fast-b",
        "fast-c",
        "broken-x",
        "broken-y",
    ]


# -- the runtest protocol (what VS Code's adapter hooks into) ------------------------------
# Like VS Code's pytest plugin: learn each test's file in a pytest_runtest_protocol wrapper,
# and report a result only for tests seen there (else its result id would be wrong).
PROTOCOL_SPY = """
import json, pytest

seen = {}

@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_protocol(item, nextitem):
    seen[item.nodeid] = str(item.path)
    yield

@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_report_teststatus(report, config):
    if report.when == "call" or (report.when == "setup" and report.skipped):
        with open("results.jsonl", "a") as handle:
            line = [report.nodeid, seen.get(report.nodeid), report.outcome]
            handle.write(json.dumps(line) + "\\n")
    yield
"""


def test_flow_reports_arrive_inside_the_runtest_protocol_like_a_tests(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    pytester.makeconftest(PROTOCOL_SPY)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester, "--runset", "run-set.toml", "test_plain.py")
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(passed=2, failed=1, skipped=2)
    lines = (pytester.path / "results.jsonl").read_text().splitlines()
    # The terminal asks for a failure's status again in its summary: a line may repeat.
    results = {tuple(json.loads(line)) for line in lines}
    runset = str(pytester.path / "run-set.toml")
    assert results == {
        ("run-set.toml::login", runset, "passed"),
        ("run-set.toml::checkout", runset, "failed"),
        ("run-set.toml::payments", runset, "skipped"),
        ("run-set.toml::search", runset, "skipped"),
        ("test_plain.py::test_plain", str(pytester.path / "test_plain.py"), "passed"),
    }


def test_teamcity_messages_for_error_xfailed_and_xpassed_flows(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[[flows]]
name = "missing"
command = ["/nonexistent/program"]
[[flows]]
name = "known-bug"
command = ["false"]
xfail = "bug 12"
[[flows]]
name = "fixed"
command = ["true"]
xfail = "bug 13"
"""
    )
    result = run(pytester, "--teamcity")
    assert result.ret == 1, result.stdout.str()
    per_flow: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for kind, attrs in teamcity_messages(result.stdout.str()):
        if "name" in attrs:
            per_flow.setdefault(attrs["name"].rsplit(".", 1)[-1], []).append((kind, attrs))
    kinds = {name: [kind for kind, _ in events] for name, events in per_flow.items()}
    assert kinds == {
        "missing": ["testStarted", "testFailed", "testFinished"],
        "known-bug": ["testStarted", "testIgnored", "testFinished"],
        "fixed": ["testStarted", "testFinished"],
    }
    failed = per_flow["missing"][1][1]
    assert failed["message"] == "test setup failed"
    assert "/nonexistent/program" in failed["details"]
    ignored = per_flow["known-bug"][1][1]
    assert "bug 12" in ignored["message"]
    assert "exit code 1" in ignored["message"]


def test_a_plugin_that_answers_the_protocol_first_does_not_lose_a_flows_result(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    # A conftest registers after pytest-runset, so its tryfirst implementation is called first.
    pytester.makeconftest(
        """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    return True
"""
    )
    result = run(pytester, "--runset", "run-set.toml", "--runset-run-id", "first")
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(passed=1, failed=1, skipped=2)

"""Flows as pytest items, end to end: parallelism, selection, junitxml, --lf, hooks, reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    CONTRACT_FLOW_FIELDS,
    CONTRACT_SUMMARY_FIELDS,
    flows_by_name,
    load_report,
    wait_for,
)

REPO = Path(__file__).resolve().parent.parent

MIXED = """
[runset]
name = "mixed"
concurrency = 2
[[flows]]
name = "login"
command = ["true"]
tags = ["smoke", "browser"]
[[flows]]
name = "checkout"
command = ["sh", "-c", "echo payment declined >&2; exit 1"]
tags = ["browser"]
[[flows]]
name = "api health"
command = ["true"]
tags = ["smoke"]
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args)


def test_example_runset_runs_in_parallel_and_writes_a_complete_report(
    pytester: pytest.Pytester,
) -> None:
    shutil.copytree(REPO / "examples", pytester.path / "examples")
    result = run(pytester, "--runset", "examples/run-set.toml", "-n", "4", "--runset-run-id", "ex")
    assert result.ret == 0, result.stdout.str()
    report = load_report(pytester.path / "examples" / "runset-results" / "ex")
    assert report["schema"] == "pytest-runset/report@1"
    assert report["status"] == "passed"
    assert report["workers"] == 4
    assert set(report["summary"]) >= CONTRACT_SUMMARY_FIELDS
    for flow in report["flows"]:
        assert set(flow) >= CONTRACT_FLOW_FIELDS
    workers = {flow["worker"] for flow in report["flows"] if flow["worker"]}
    assert len(workers) >= 2
    metrics = flows_by_name(report)["report metrics"]
    assert metrics["artifacts"] == ["report-metrics/numbers.txt"]
    assert metrics["metrics"]["total"] > 0
    assert {flow["kind"] for flow in report["flows"]} == {"command", "steps", "callable"}
    flows = flows_by_name(report)
    # The app ran as a service on a leased port; the browser flow signed in as a pool member.
    assert flows["sign in"]["persona"] in ("alice", "bob")
    assert len(flows["own port"]["ports"]) == 1
    run_dir = pytester.path / "examples" / "runset-results" / "ex"
    assert "serving on http://127.0.0.1:" in (run_dir / "services" / "app.log").read_text()
    result.stdout.fnmatch_lines(["runset example: 11 passed, 1 skipped in *"])


def test_eight_one_second_flows_overlap_on_four_workers(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    flows = "".join(f'[[flows]]\nname = "sleep {i}"\ncommand = ["sleep", "1"]\n' for i in range(8))
    write_runset(flows)
    result = run(pytester, "--runset", "run-set.toml", "-n", "4", "--runset-run-id", "par")
    assert result.ret == 0
    report = load_report(pytester.path / "runset-results" / "par")
    spans = [(f["started_s"], f["started_s"] + f["duration_s"]) for f in report["flows"]]
    # Peak concurrency from the flows' own start/end offsets (no wall-clock assertion).
    peak = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert 3 <= peak <= 4
    assert report["summary"]["parallelism_efficiency"] > 0.5
    assert report["summary"]["lower_bound_s"] >= 2.0
    slots_by_time = sorted((f["started_s"], f["slot"]) for f in report["flows"])
    assert {slot for _, slot in slots_by_time} == {0, 1, 2, 3}


def test_running_flows_never_share_a_slot(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    script = (
        'echo "$RUNSET_SLOT $(date +%s.%N)" > "$RUNSET_FLOW_DIR/span"; sleep 0.3; '
        'echo "$(date +%s.%N)" >> "$RUNSET_FLOW_DIR/span"'
    )
    flows = "".join(
        f'[[flows]]\nname = "f{i}"\ncommand = {json.dumps(script)}\nshell = true\n'
        for i in range(9)
    )
    write_runset("[runset]\nconcurrency = 3\n" + flows)
    assert run(pytester, "--runset", "run-set.toml", "--runset-run-id", "slots").ret == 0
    run_dir = pytester.path / "runset-results" / "slots"
    spans = []
    for i in range(9):
        first, end = (run_dir / f"f{i}" / "span").read_text().split("\n")[:2]
        slot, start = first.split()
        spans.append((int(slot), float(start), float(end)))
    assert {slot for slot, _, _ in spans} <= {0, 1, 2}
    for a in spans:
        for b in spans:
            if a is not b and a[0] == b[0]:
                assert a[2] <= b[1] or b[2] <= a[1], (a, b)


def test_junitxml_has_one_testcase_per_flow_with_properties(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(MIXED)
    result = run(pytester, "--runset", "run-set.toml", "--junitxml", "junit.xml")
    assert result.ret == 1
    root = ET.parse(pytester.path / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert sorted(case.get("name") for case in cases) == ["api-health", "checkout", "login"]
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.findall("properties/property")}
        assert set(props) == {"runset_slug_dir", "runset_attempts", "runset_status", "runset_flaky"}
        assert props["runset_slug_dir"].endswith(case.get("name") or "")
        assert props["runset_attempts"] == "1"
    failed = [case for case in cases if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == ["checkout"]
    assert "payment declined" in (failed[0].find("failure").text or "")  # type: ignore[union-attr]


def test_last_failed_reruns_only_the_failed_flow(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(MIXED)
    assert run(pytester, "--runset", "run-set.toml").ret == 1
    again = run(pytester, "--runset", "run-set.toml", "--lf", "-v")
    assert again.ret == 1
    again.stdout.fnmatch_lines(["*FAILED run-set.toml::checkout*"])
    assert "run-set.toml::login" not in again.stdout.str()
    assert "run-set.toml::api-health" not in again.stdout.str()


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (("-k", "login"), {"login"}),
        (("-k", "not checkout"), {"login", "api-health"}),
        (("-m", "smoke"), {"login", "api-health"}),
        (("-m", "browser and not smoke"), {"checkout"}),
        (("-m", "runset"), {"login", "checkout", "api-health"}),
        (("--deselect", "run-set.toml::checkout"), {"login", "api-health"}),
    ],
)
def test_selection_options_pick_flows(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    selection: tuple[str, ...],
    expected: set[str],
) -> None:
    write_runset(MIXED)
    result = run(
        pytester,
        "--runset",
        "run-set.toml",
        "--strict-markers",
        "--runset-run-id",
        "sel",
        *selection,
    )
    assert "PytestUnknownMarkWarning" not in result.stdout.str()
    report = load_report(pytester.path / "runset-results" / "sel")
    assert {flow["slug"] for flow in report["flows"]} == expected


def test_collect_only_lists_nodeids_and_runs_nothing(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(MIXED)
    result = run(pytester, "--runset", "run-set.toml", "--collect-only", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["run-set.toml::login", "run-set.toml::checkout", "run-set.toml::api-health"]
    )
    assert not (pytester.path / "runset-results").exists()


def test_one_nodeid_runs_one_flow_like_an_ide_would(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(MIXED)
    result = run(pytester, "run-set.toml::login", "--runset-run-id", "one")
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    report = load_report(pytester.path / "runset-results" / "one")
    assert [flow["slug"] for flow in report["flows"]] == ["login"]


def test_a_file_given_twice_is_collected_once(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(MIXED)
    result = run(pytester, "--runset", "run-set.toml", "--runset", "./run-set.toml", "run-set.toml")
    result.assert_outcomes(passed=2, failed=1)


def test_runset_alone_collects_only_flows_and_paths_add_tests(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "flow"\ncommand = ["true"]\n')
    pytester.makepyfile(
        test_plain="""
import os

def test_runs_in_the_main_process():
    assert "RUNSET_FLOW_ID" not in os.environ
"""
    )
    only_flows = run(pytester, "--runset", "run-set.toml")
    only_flows.assert_outcomes(passed=1)
    assert "test_plain" not in only_flows.stdout.str()
    both = run(pytester, "--runset", "run-set.toml", "test_plain.py", "-v")
    both.assert_outcomes(passed=2)
    both.stdout.fnmatch_lines(["*test_plain.py::test_runs_in_the_main_process PASSED*"])


def test_verbose_shows_the_worker_of_each_flow(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(MIXED)
    result = run(pytester, "--runset", "run-set.toml", "-v")
    result.stdout.fnmatch_lines(["[[]gw?[]] *PASSED run-set.toml::login*"])


def test_hooks_see_every_flow_and_one_report(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(MIXED)
    pytester.makeconftest(
        """
import json, pathlib

LOG = pathlib.Path("hooks.jsonl")

def pytest_runset_flow_env(config, flow, env):
    env["FROM_HOOK"] = "hello " + flow.slug

def pytest_runset_flow_finished(config, result):
    journal = pathlib.Path(config.rootpath, "runset-results", "hk", "journal.jsonl")
    journaled = result["slug"] in journal.read_text()
    with LOG.open("a") as f:
        f.write(json.dumps({"flow": result["slug"], "journaled": journaled}) + "\\n")

def pytest_runset_report(config, report):
    with LOG.open("a") as f:
        f.write(json.dumps({"report": report["runset"]["name"],
                            "n": len(report["flows"])}) + "\\n")
"""
    )
    write_runset(
        MIXED.replace('command = ["true"]', 'command = ["sh", "-c", "echo $FROM_HOOK"]', 1)
    )
    run(pytester, "--runset", "run-set.toml", "--runset-run-id", "hk")
    lines = [json.loads(line) for line in (pytester.path / "hooks.jsonl").read_text().splitlines()]
    flows = [line for line in lines if "flow" in line]
    assert sorted(line["flow"] for line in flows) == ["api-health", "checkout", "login"]
    assert all(line["journaled"] for line in flows)
    assert lines[-1] == {"report": "mixed", "n": 3}
    out = pytester.path / "runset-results" / "hk" / "login" / "stdout.log"
    assert out.read_text().strip() == "hello login"


def test_retry_makes_a_flaky_pass_and_keeps_every_attempt(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    script = (
        'if [ "$RUNSET_ATTEMPT" = 1 ]; then echo first >&2; exit 1; fi; '
        'echo "attempt $RUNSET_ATTEMPT"'
    )
    write_runset(
        f'[[flows]]\nname = "wobbly"\ncommand = {json.dumps(script)}\nshell = true\nretries = 2\n'
    )
    result = run(pytester, "--runset", "run-set.toml", "--runset-run-id", "fl")
    assert result.ret == 0
    run_dir = pytester.path / "runset-results" / "fl"
    flow = flows_by_name(load_report(run_dir))["wobbly"]
    assert flow["status"] == "passed"
    assert flow["flaky"] is True
    assert flow["attempts"] == 2
    assert flow["dir"] == "wobbly-retry1"
    assert (run_dir / "wobbly" / "stderr.log").read_text().strip() == "first"
    assert (run_dir / "wobbly-retry1" / "stdout.log").read_text().strip() == "attempt 2"
    assert load_report(run_dir)["summary"]["flaky"] == 1


def test_skip_xfail_and_exit_77(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[[flows]]
name = "later"
command = ["true"]
skip = "waiting for the sandbox"
[[flows]]
name = "known bug"
command = ["false"]
xfail = "ticket 12"
[[flows]]
name = "self skip"
command = ["sh", "-c", "exit 77"]
"""
    )
    result = run(pytester, "--runset", "run-set.toml", "--runset-run-id", "sx", "-rsx")
    assert result.ret == 0
    result.assert_outcomes(skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*waiting for the sandbox*"])
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "sx"))
    assert flows["later"]["status"] == "skipped"
    assert flows["later"]["attempts"] == 0
    assert flows["known bug"]["status"] == "xfailed"
    assert flows["self skip"]["status"] == "skipped"


def test_exitfirst_stops_dispatch_and_marks_the_rest_not_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[runset]
concurrency = 1
[[flows]]
name = "broken"
command = ["false"]
[[flows]]
name = "second"
command = ["true"]
[[flows]]
name = "third"
command = ["true"]
"""
    )
    result = run(pytester, "--runset", "run-set.toml", "-x", "--runset-run-id", "xf")
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "xf"))
    assert flows["broken"]["status"] == "failed"
    assert flows["second"]["status"] == "not_run"
    assert flows["third"]["status"] == "not_run"


def test_reports_keep_file_order_and_latest_points_at_the_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[runset]
concurrency = 3
[[flows]]
name = "slowest"
command = ["sleep", "0.8"]
[[flows]]
name = "slow"
command = ["sleep", "0.4"]
[[flows]]
name = "fast"
command = ["true"]
"""
    )
    assert run(pytester, "--runset", "run-set.toml", "--runset-run-id", "ord").ret == 0
    results = pytester.path / "runset-results"
    report = load_report(results / "ord")
    assert [flow["name"] for flow in report["flows"]] == ["slowest", "slow", "fast"]
    journal = (results / "ord" / "journal.jsonl").read_text().splitlines()
    finished = [json.loads(line)["name"] for line in journal if '"event": "flow"' in line]
    assert finished == ["fast", "slow", "slowest"]
    assert os.readlink(results / "latest") == "ord"


def test_second_session_on_a_busy_run_id_fails_fast(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_runset('[[flows]]\nname = "long"\ncommand = ["sleep", "30"]\n')
    first = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "busy")
    assert wait_for((pytester.path / "runset-results" / "busy" / "long").exists)
    second = run(pytester, "--runset", "run-set.toml", "--runset-run-id", "busy")
    assert second.ret == 4
    assert "in use by another pytest session" in second.stderr.str()
    assert "Traceback" not in second.stderr.str() + second.stdout.str()
    first.terminate()
    first.communicate(timeout=60)

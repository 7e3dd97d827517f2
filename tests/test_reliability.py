"""Nothing lost, nothing left running: interrupts, controller death and resume, restart budgets,
global timeouts, flaky flows, huge output, hostile paths. Real processes throughout."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    TREE_SCRIPT,
    flows_by_name,
    load_report,
    processes_with_cookie_prefix,
    wait_for,
)

STATUSES = {
    "passed",
    "failed",
    "error",
    "timeout",
    "skipped",
    "xfailed",
    "xpassed",
    "interrupted",
    "not_run",
}


def _interrupt_runset(python: str) -> str:
    quick = "".join(
        f'[[flows]]\nname = "quick {i}"\ncommand = ["sleep", "0.{i}"]\n' for i in range(1, 7)
    )
    return (
        "[runset]\nconcurrency = 3\nkill_grace = 1\n"
        + quick
        + f'[[flows]]\nname = "tree"\ncommand = [{python!r}, "tree.py"]\n'
        + '[[flows]]\nname = "long"\ncommand = ["sleep", "600"]\n'
        + "".join(f'[[flows]]\nname = "tail {i}"\ncommand = ["true"]\n' for i in range(4))
    )


def test_sigint_at_random_moments_always_leaves_a_complete_report_and_no_process(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT, encoding="utf-8")
    write_runset(_interrupt_runset(sys.executable))
    names = {f"quick {i}" for i in range(1, 7)} | {"tree", "long"} | {f"tail {i}" for i in range(4)}
    rng = random.Random(20261122)
    for trial in range(10):
        run_id = f"sigint{trial}"
        run_dir = pytester.path / "runset-results" / run_id
        proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", run_id)
        # "Random moments" of the run itself: from the moment its directory exists (gateways
        # starting, flows dispatching, finishing, being journaled) on.
        assert wait_for((run_dir / "journal.jsonl").exists, 60)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 2, (trial, out.decode(errors="replace"))
        report = load_report(run_dir)
        assert report["status"] == "interrupted"
        assert {flow["name"] for flow in report["flows"]} == names, trial
        assert all(flow["status"] in STATUSES for flow in report["flows"])
        assert flows_by_name(report)["long"]["status"] in ("interrupted", "not_run")
        assert b"Traceback" not in out
        assert wait_for(lambda rid=run_id: not processes_with_cookie_prefix(f"{rid}."), 5), trial


COUNTING_RUNSET = """
[runset]
concurrency = 2
kill_grace = 1
[[flows]]
name = "one"
command = ["sh", "-c", "echo one >> ../counter.txt"]
[[flows]]
name = "two"
command = ["sh", "-c", "echo two >> ../counter.txt"]
[[flows]]
name = "stuck"
command = ["sh", "-c", "echo stuck >> ../counter.txt; [ -f ../go ] || exec {python} tree.py"]
[[flows]]
name = "three"
command = ["sh", "-c", "echo three >> ../counter.txt"]
[[flows]]
name = "four"
command = ["sh", "-c", "echo four >> ../counter.txt"]
"""


def test_controller_sigkill_then_resume_last_completes_without_rerunning_passed_flows(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    project = pytester.path / "project"
    project.mkdir()
    (project / "tree.py").write_text(TREE_SCRIPT, encoding="utf-8")
    (project / "run-set.toml").write_text(COUNTING_RUNSET, encoding="utf-8")
    counter = pytester.path / "counter.txt"
    run_dir = project / "runset-results" / "crashed"
    proc = spawn_pytest("--runset", "project/run-set.toml", "--runset-run-id", "crashed")
    assert wait_for(
        lambda: (
            (run_dir / "stuck" / "started").exists()
            and (run_dir / "journal.jsonl").read_text().count('"event": "flow"') == 4
        ),
        60,
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    time.sleep(5)
    assert processes_with_cookie_prefix("crashed.") == []
    assert not (run_dir / "report.json").exists()
    before = counter.read_text().split()
    assert sorted(before) == ["four", "one", "stuck", "three", "two"]

    # The next session in the same output directory points at the dead run.
    (pytester.path / "go").write_text("")
    other = pytester.runpytest_subprocess(
        "--runset", "project/run-set.toml", "--runset-run-id", "other", "-k", "one",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    other.stdout.fnmatch_lines(
        ["*run crashed in * ended without a report*--runset-resume crashed*"]
    )

    resumed = pytester.runpytest_subprocess(
        "--runset", "project/run-set.toml", "--runset-resume", "last", "-p", "no:cacheprovider"
    )
    assert resumed.ret == 0, resumed.stdout.str()
    report = load_report(run_dir)
    assert report["status"] == "passed"
    assert [flow["name"] for flow in report["flows"]] == ["one", "two", "stuck", "three", "four"]
    after = counter.read_text().split()
    # Only the interrupted flow ran again (plus "one" once more, in the unrelated "other" run).
    assert after[len(before) :] == ["one", "stuck"]
    resumed.assert_outcomes(passed=5)


def test_resume_reruns_failed_and_changed_flows_only(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    text = """
[[flows]]
name = "stable"
command = ["sh", "-c", "echo stable >> counter.txt"]
[[flows]]
name = "edited"
command = ["sh", "-c", "echo edited-v1 >> counter.txt"]
[[flows]]
name = "broken"
command = ["sh", "-c", "echo broken >> counter.txt; [ -f fixed ]"]
"""
    write_runset(text)
    first = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "r")
    assert first.ret == 1
    write_runset(text.replace("edited-v1", "edited-v2"))
    (pytester.path / "fixed").write_text("")
    second = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-resume", "r")
    assert second.ret == 0
    second.stdout.fnmatch_lines(["*run-set.toml changed since run r started; run again: edited*"])
    lines = (pytester.path / "counter.txt").read_text().split()
    assert lines == ["stable", "edited-v1", "broken", "edited-v2", "broken"] or sorted(
        lines[3:]
    ) == ["broken", "edited-v2"]
    assert lines.count("stable") == 1
    statuses = {
        f["name"]: f["status"] for f in load_report(pytester.path / "runset-results" / "r")["flows"]
    }
    assert statuses == {"stable": "passed", "edited": "passed", "broken": "passed"}


def test_resume_of_a_journal_with_a_torn_last_line(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "a"\ncommand = ["true"]\n[[flows]]\nname = "b"\ncommand = ["true"]\n'
    )
    first = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "t")
    assert first.ret == 0
    run_dir = pytester.path / "runset-results" / "t"
    journal = run_dir / "journal.jsonl"
    lines = journal.read_text().splitlines()
    flow_b = next(line for line in lines if '"slug": "b"' in line)
    # As if the controller died while appending b's entry, before any report.
    kept = [line for line in lines if '"event": "report"' not in line and line != flow_b]
    journal.write_text("\n".join(kept) + "\n" + flow_b[: len(flow_b) // 2])
    (run_dir / "report.json").unlink()
    resumed = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-resume", "t")
    assert resumed.ret == 0
    resumed.stdout.fnmatch_lines(["*ignored 1 torn line(s)*", "*1 flow(s) already done*"])
    report = load_report(run_dir)
    assert [(f["name"], f["status"]) for f in report["flows"]] == [("a", "passed"), ("b", "passed")]


def test_resume_of_a_run_that_does_not_exist_is_a_usage_error(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "a"\ncommand = ["true"]\n')
    missing = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-resume", "nope")
    assert missing.ret == 4
    assert "--runset-resume nope: no run with a journal" in missing.stderr.str()
    last = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-resume", "last")
    assert last.ret == 4
    assert "no interrupted or failed run to resume in" in last.stderr.str()


@pytest.mark.parametrize("how", ["kill -9 $PPID", "kill -SEGV $PPID"])
def test_worker_crashes_are_bounded_and_the_rest_is_not_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], how: str
) -> None:
    crash = json.dumps(["sh", "-c", f"{how}; sleep 600"])
    write_runset(
        f"""
[runset]
concurrency = 1
[[flows]]
name = "crash 1"
command = {crash}
[[flows]]
name = "crash 2"
command = {crash}
[[flows]]
name = "after 1"
command = ["true"]
[[flows]]
name = "after 2"
command = ["true"]
"""
    )
    pytester.makeini("[pytest]\nrunset_max_restarts = 1\n")
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "bound", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "bound"))
    assert flows["crash 1"]["status"] == "error"
    assert flows["crash 2"]["status"] == "error"
    assert "worker crashed" in flows["crash 1"]["message"]
    for name in ("after 1", "after 2"):
        assert flows[name]["status"] == "not_run"
        assert "no worker left" in flows[name]["message"]
    assert processes_with_cookie_prefix("bound.") == []


def test_global_timeout_kills_running_flows_and_marks_the_rest_not_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT, encoding="utf-8")
    write_runset(
        f"""
[runset]
concurrency = 1
kill_grace = 1
[[flows]]
name = "quick"
command = ["true"]
[[flows]]
name = "endless"
command = [{sys.executable!r}, "tree.py"]
[[flows]]
name = "never"
command = ["true"]
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "gt", "--runset-global-timeout", "3",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == 1
    report = load_report(pytester.path / "runset-results" / "gt")
    flows = flows_by_name(report)
    assert flows["quick"]["status"] == "passed"
    assert flows["endless"]["status"] == "timeout"
    assert "global timeout of 3s expired" in flows["endless"]["message"]
    assert flows["never"]["status"] == "not_run"
    assert report["status"] == "failed"
    assert processes_with_cookie_prefix("gt.") == []


def test_global_timeout_with_nothing_failed_still_exits_1(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[runset]\nconcurrency = 1\n[[flows]]\nname = "slow"\ncommand = ["sleep", "2"]\n'
        '[[flows]]\nname = "later"\ncommand = ["true"]\n'
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "g2", "--runset-global-timeout", "0.5s",
        "--runset-timeout", "30", "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "g2"))
    assert flows["slow"]["status"] == "timeout"
    assert flows["later"]["status"] == "not_run"


def test_fail_on_flaky_counts_a_retry_pass_as_failure(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    script = '[ "$RUNSET_ATTEMPT" != 1 ]'
    write_runset(
        f'[[flows]]\nname = "wobbly"\ncommand = {json.dumps(script)}\nshell = true\nretries = 1\n'
    )
    lenient = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "lenient", "--junitxml", "j.xml"
    )
    assert lenient.ret == 0
    lenient.stdout.fnmatch_lines(["flaky: run-set.toml::wobbly passed on attempt 2", "*1 flaky*"])
    case = ET.parse(pytester.path / "j.xml").getroot().find(".//testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.findall("properties/property")}
    assert props["runset_flaky"] == "True"
    strict = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "strict", "--runset-fail-on-flaky"
    )
    assert strict.ret == 1
    flow = flows_by_name(load_report(pytester.path / "runset-results" / "strict"))["wobbly"]
    assert flow["status"] == "failed"
    assert flow["flaky"] is True
    assert "passed on attempt 2" in flow["message"]
    run_dir = pytester.path / "runset-results" / "strict"
    assert (run_dir / "wobbly").is_dir()
    assert (run_dir / "wobbly-retry1").is_dir()


def test_one_gigabyte_of_stdout_keeps_the_controller_small(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "firehose"\ncommand = ["sh", "-c", "head -c 1000000000 /dev/zero"]\n'
    )
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the process that
    # forked pytest (here: this, much larger, test session) across exec.
    pytester.makeconftest(
        """
import pathlib

def pytest_unconfigure(config):
    status = pathlib.Path("/proc/self/status").read_text()
    peak_kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    pathlib.Path("controller-peak-kib").write_text(peak_kib)
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "big", "-p", "no:cacheprovider"
    )
    assert result.ret == 0
    log = pytester.path / "runset-results" / "big" / "firehose" / "stdout.log"
    try:
        assert log.stat().st_size == 1_000_000_000
        peak_mib = int((pytester.path / "controller-peak-kib").read_text()) / 1024
        assert peak_mib < 200, f"controller peak RSS {peak_mib:.0f} MiB"
    finally:
        log.unlink()


def test_runset_on_a_path_with_spaces_and_non_ascii(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "my runs" / "ünïcode ✓"
    folder.mkdir(parents=True)
    (folder / "run-set.toml").write_text(
        '[[flows]]\nname = "Grüße, Welt!"\ncommand = ["sh", "-c", "pwd > where.txt"]\n',
        encoding="utf-8",
    )
    result = pytester.runpytest_subprocess(
        "--runset", "my runs/ünïcode ✓/run-set.toml", "--runset-run-id", "u", "-v"
    )
    assert result.ret == 0
    report = load_report(folder / "runset-results" / "u")
    assert report["flows"][0]["slug"] == "gr-e-welt"
    assert (folder / "where.txt").read_text().strip() == str(folder)


def test_a_symlink_planted_at_a_flow_directory_is_not_followed(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "login"\ncommand = ["sh", "-c", "echo owned > stdout-marker"]\n'
    )
    elsewhere = pytester.path / "elsewhere"
    elsewhere.mkdir()
    run_dir = pytester.path / "runset-results" / "planted"
    run_dir.mkdir(parents=True)
    (run_dir / "login").symlink_to(elsewhere)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "planted", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    flow = flows_by_name(load_report(run_dir))["login"]
    assert flow["status"] == "error"
    assert "resolves outside" in flow["message"] or "not a plain directory" in flow["message"]
    assert list(elsewhere.iterdir()) == []


def test_run_directory_is_not_writable_by_others(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "a"\ncommand = ["true"]\n')
    old = os.umask(0)
    try:
        result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "m")
    finally:
        os.umask(old)
    assert result.ret == 0
    mode = (pytester.path / "runset-results" / "m").stat().st_mode & 0o777
    assert mode & 0o022 == 0, oct(mode)


def test_an_output_directory_that_cannot_be_created_is_a_usage_error(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "a"\ncommand = ["true"]\n')
    (pytester.path / "plain-file").write_text("")
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-output", "plain-file/results"
    )
    assert result.ret == 4
    err = result.stderr.str()
    assert "plain-file" in err
    assert "Traceback" not in err + result.stdout.str()

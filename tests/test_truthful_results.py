"""Results never lie: a secret cannot rewrite a status, and a run whose flows found no worker
does not end green. Real sessions through pytest, real gateways."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report

RUNSET = """
[personas.alice]
username = "alice"
password_env = "ALICE_PASSWORD"

[[flows]]
name = "good"
persona = "alice"
command = ["sh", "-c", "echo ran >> ran.log; echo login $RUNSET_PERSONA_PASSWORD"]

[[flows]]
name = "bad"
persona = "alice"
command = ["sh", "-c", "echo wrong $RUNSET_PERSONA_PASSWORD; exit 2"]
"""


@pytest.mark.parametrize("secret", ["fail", "pass", "failed", "passed", "ed", "0"])
def test_a_secret_that_reads_like_a_status_changes_no_status_or_count(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> None:
    monkeypatch.setenv("ALICE_PASSWORD", secret)
    write_runset(RUNSET)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "lie", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = load_report(pytester.path / "runset-results" / "lie")
    flows = flows_by_name(report)
    assert flows["good"]["status"] == "passed"
    assert flows["bad"]["status"] == "failed"
    assert report["status"] == "failed"
    assert report["summary"]["passed"] == 1
    assert report["summary"]["failed"] == 1
    shown = subprocess.run(
        [sys.executable, "-m", "pytest_runset.cli", "show", "runset-results/lie"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 1, shown.stdout + shown.stderr
    # Resuming the run re-runs nothing that passed.
    resumed = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-resume", "lie", "-p", "no:cacheprovider"
    )
    assert resumed.ret == pytest.ExitCode.TESTS_FAILED
    assert (pytester.path / "ran.log").read_text().splitlines() == ["ran"]


def test_flows_that_no_worker_could_start_fail_the_run_with_the_cause(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "a"\ncommand = ["true"]\n[[flows]]\nname = "b"\ncommand = ["true"]\n'
    )
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "nogw",
        "--runset-tx",
        "2*popen//python=/nonexistent/python",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*runset: flows left unrun: no worker could be started (*"])
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "nogw"))
    for name in ("a", "b"):
        assert flows[name]["status"] == "not_run"
        assert flows[name]["message"].startswith("not run: no worker could be started (")

"""``-v`` says TIMEOUT and FLAKY for flows; pytest's counts stay those of failed and passed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_runset.session.teststatus import Verdict, flow_teststatus, telling

RUNSET = """\
[[flows]]
name = "slow"
command = ["sleep", "5"]
timeout = "1s"
kill_grace = "0s"

[[flows]]
name = "wobbly"
command = 'if [ "$RUNSET_ATTEMPT" = 1 ]; then exit 1; fi'
shell = true
retries = 1

[[flows]]
name = "fine"
command = ["true"]
"""


def _report(outcome: str, when: str = "call", **extra: object) -> pytest.TestReport:
    return pytest.TestReport(
        "run-set.toml::x",
        ("run-set.toml", 0, "flow"),
        {},
        outcome,
        None,
        when,
        **extra,  # type: ignore[arg-type]
    )


def test_a_timeout_is_counted_as_failed_and_says_timeout(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    with telling(config, "run-set.toml::x", Verdict("timeout", flaky=False)):
        assert flow_teststatus(_report("failed"), config) == (
            "failed",
            "F",
            ("TIMEOUT", {"red": True}),
        )
        # Only the call report carries the word, as pytest's own.
        assert flow_teststatus(_report("passed", when="teardown"), config) is None
    assert flow_teststatus(_report("failed"), config) is None


def test_a_flaky_pass_is_counted_as_passed_and_says_flaky(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    # Inside pytest-xdist the verdict travels on the report itself.
    report = _report("passed", runset_status="passed", runset_flaky=True)
    assert flow_teststatus(report, config) == ("passed", ".", ("FLAKY", {"yellow": True}))
    # --runset-fail-on-flaky: failed, and the word says why.
    failed = _report("failed", runset_status="failed", runset_flaky=True)
    assert flow_teststatus(failed, config) == ("failed", "F", ("FLAKY", {"red": True}))
    plain = _report("failed", runset_status="failed", runset_flaky=False)
    assert flow_teststatus(plain, config) is None


def test_verbose_lines_say_timeout_and_flaky(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(RUNSET)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-workers", "3", "-v", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    result.stdout.re_match_lines([r"\[gw\d\] \[ *\d+%\] TIMEOUT run-set\.toml::slow 1\.\d\ds$"])
    result.stdout.re_match_lines([r"\[gw\d\] \[ *\d+%\] FLAKY run-set\.toml::wobbly \d+\.\d\ds$"])
    result.stdout.re_match_lines([r"\[gw\d\] \[ *\d+%\] PASSED run-set\.toml::fine \d+\.\d\ds$"])
    # The counts are pytest's: a timeout is a failure, a flaky pass a pass.
    result.stdout.re_match_lines([r"=+ 1 failed, 2 passed in "])
    result.stdout.fnmatch_lines(["FAILED run-set.toml::slow - timeout: timeout after 1s"])


def test_without_verbose_the_letters_stay(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(RUNSET)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-workers", "3", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    result.stdout.re_match_lines([r"run-set\.toml [.F]{3} +\[100%\]$"])
    assert "TIMEOUT" not in result.stdout.str()

"""Other plugins' options for flows: pytest-timeout's, pytest-rerunfailures', pytest-repeat's and
pytest-playwright's options are honoured (mapped onto pytest-runset's own) or refused in one line.

These tests stand in for the real plugins with small plugins that register the same options
under the same names (``-p no:<real> -p <stand-in>``, so they run with or without the real
ones installed); tests/test_plugin_compat.py runs the real plugins.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report
from pytest_runset.engine.scheduler import RetryDelay, Scheduler, Task
from pytest_runset.session.familiar_options import Adopted, adopted, given, refusals
from pytest_runset.session.repeat import repeated
from pytest_runset.session.settings import SETTINGS

# The options of each plugin, as the real one registers them (names, dests, types, defaults).
STAND_INS = {
    "timeout": """
def pytest_addoption(parser):
    parser.addoption("--timeout", type=float)
    parser.addoption("--session-timeout", dest="session_timeout", type=float, default=None)
""",
    "rerunfailures": """
def pytest_addoption(parser):
    group = parser.getgroup("rerunfailures")
    group._addoption("--reruns", dest="reruns", type=int)
    group._addoption("--force-reruns", dest="force_reruns", type=int)
    group._addoption("--reruns-delay", dest="reruns_delay", type=float)
    group._addoption("--reruns-delay-backoff-factor", dest="reruns_delay_backoff_factor",
                     type=float)
    group._addoption("--only-rerun", action="append", dest="only_rerun", default=None)
    group._addoption("--rerun-except", action="append", dest="rerun_except", default=None)
    group._addoption("--rerun-exclude-path", action="append", dest="rerun_exclude_path",
                     default=None)
    group._addoption("--reruns-mode", dest="reruns_mode", choices=("strict", "append"),
                     default="strict")
    group._addoption("--max-suite-reruns", dest="max_suite_reruns", type=int, default=None)
""",
    "repeat": """
def pytest_addoption(parser):
    parser.addoption("--count", action="store", default=1, type=int)
    parser.addoption("--repeat-scope", action="store", default="function",
                     choices=("function", "class", "module", "session"))
""",
    "playwright": """
def pytest_addoption(parser):
    group = parser.getgroup("playwright")
    group.addoption("--browser", action="append", default=[],
                    choices=["chromium", "firefox", "webkit"])
    group.addoption("--headed", action="store_true", default=False)
    group.addoption("--browser-channel", action="store", default=None)
    group.addoption("--slowmo", default=0, type=int)
    group.addoption("--device", default=None, action="store")
    group.addoption("--output", default="test-results")
    group.addoption("--tracing", default="off", choices=["on", "off", "retain-on-failure"])
    group.addoption("--video", default="off", choices=["on", "off", "retain-on-failure"])
    group.addoption("--screenshot", default="off", choices=["on", "off", "only-on-failure"])
    group.addoption("--full-page-screenshot", action="store_true", default=False)
    group.addoption("--base-url", default=None)
""",
}


def stand_in(pytester: pytest.Pytester, *plugins: str) -> list[str]:
    """Write the stand-ins into the test directory; the arguments that load them (and keep the
    real plugins, when installed, from registering the same options)."""
    pytester.syspathinsert()
    args: list[str] = []
    for plugin in plugins:
        module = f"stand_in_{plugin}"
        (pytester.path / f"{module}.py").write_text(STAND_INS[plugin])
        args += ["-p", f"no:{plugin}", "-p", module]
    return args


RUNSET = """
[runset]
name = "familiar"
[[flows]]
name = "quick"
command = ["true"]
"""


@pytest.fixture
def runset(write_runset: Callable[..., Path]) -> Path:
    return write_runset(RUNSET)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


# -- pytest-timeout -----------------------------------------------------------------------------
def test_timeout_of_pytest_timeout_times_out_a_flow(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "slow"\ncommand = ["sleep", "4"]\n')
    started = time.monotonic()
    result = run(
        pytester, *stand_in(pytester, "timeout"), "--runset", "run-set.toml", "--timeout", "1"
    )
    assert time.monotonic() - started < 15
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*timeout: timeout after 1s*"])


def test_runset_timeout_wins_over_timeout(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "slowish"\ncommand = ["sleep", "1.5"]\n')
    args = stand_in(pytester, "timeout")
    result = run(
        pytester, *args, "--runset", "run-set.toml", "--timeout", "1", "--runset-timeout", "20"
    )
    assert result.ret == 0, result.stdout.str()


def test_timeout_zero_is_refused_in_one_line_only_when_there_are_flows(
    pytester: pytest.Pytester, runset: Path
) -> None:
    args = stand_in(pytester, "timeout")
    result = run(pytester, *args, "--runset", "run-set.toml", "--timeout", "0")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert errors == [
        "ERROR: --timeout 0 (pytest-timeout): every flow has a timeout; give a number of "
        "seconds above 0, or --runset-timeout SECONDS"
    ]
    # A session without flows is none of pytest-runset's business.
    runset.unlink()
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    assert run(pytester, *args, "--timeout", "0", "test_plain.py").ret == 0


def test_options_map_onto_the_settings(pytester: pytest.Pytester) -> None:
    args = stand_in(pytester, "timeout", "rerunfailures")
    config = pytester.parseconfigure(
        *args, "--timeout", "7", "--session-timeout", "60", "--reruns", "2", "--reruns-delay", "1.5"
    )
    resolved = config.stash[SETTINGS]
    assert resolved.timeout_override == 7.0
    assert resolved.global_timeout == 60.0
    assert resolved.retries_override == 2
    assert resolved.retry_delay == RetryDelay(1.5, 1.0)
    # pytest-runset's own options win.
    config = pytester.parseconfigure(*args, "--timeout", "7", "--runset-timeout", "9",
                                     "--reruns", "2", "--runset-retries", "0")  # fmt: skip
    assert config.stash[SETTINGS].timeout_override == 9.0
    assert config.stash[SETTINGS].retries_override == 0
    # Without the plugins nothing is adopted.
    assert adopted(pytester.parseconfigure()) == Adopted()


# -- pytest-rerunfailures -----------------------------------------------------------------------
FLAKY = """
[[flows]]
name = "flaky"
command = ["sh", "-c", "test -e $RUNSET_RUN_DIR/once && exit 0; touch $RUNSET_RUN_DIR/once; exit 1"]
"""


def test_reruns_retry_flows_after_the_reruns_delay(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLAKY)
    args = stand_in(pytester, "rerunfailures")
    result = run(
        pytester, *args, "--runset", "run-set.toml", "--runset-run-id", "r",
        "--reruns", "2", "--reruns-delay", "1",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    run_dir = pytester.path / "runset-results" / "r"
    flow = flows_by_name(load_report(run_dir))["flaky"]
    assert (flow["status"], flow["attempts"], flow["flaky"]) == ("passed", 2, True)
    first = json.loads((run_dir / "flaky" / "result.json").read_text())
    second = json.loads((run_dir / "flaky-retry1" / "result.json").read_text())
    gap = second["started_at"] - (first["started_at"] + first["duration_s"])
    assert gap >= 0.95


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--only-rerun", "Timeout"],
            "--only-rerun Timeout (pytest-rerunfailures): flows are retried on any failure, "
            "timeout or error (--runset-retries N); drop --only-rerun",
        ),
        (
            ["--max-suite-reruns", "3"],
            "--max-suite-reruns 3 (pytest-rerunfailures): flows have no suite-wide retry "
            "budget; use --runset-retries N",
        ),
        (
            ["--reruns", "1", "--reruns-mode", "append"],
            "--reruns-mode append (pytest-rerunfailures): --reruns replaces each flow's own "
            "retries; set retries in the run-set, or drop --reruns-mode",
        ),
    ],
)
def test_rerun_options_flows_cannot_honour_are_refused(
    pytester: pytest.Pytester, runset: Path, option: list[str], message: str
) -> None:
    result = run(
        pytester, *stand_in(pytester, "rerunfailures"), "--runset", "run-set.toml", *option
    )
    assert result.ret == 4
    assert [line for line in result.stderr.lines if line.startswith("ERROR:")] == [
        f"ERROR: {message}"
    ]


def test_a_retry_waits_out_its_delay_while_others_start() -> None:
    scheduler = Scheduler(["a", "b"], 1, {"a": 2}, retry_delay=RetryDelay(2.0, 3.0))
    assert scheduler.assignments(now=0.0) == [(0, Task("a"))]
    assert scheduler.finished(0, "failed", now=1.0) == Task("a", 2)
    # The retry keeps its place at the front, but "b" starts while it waits.
    assert scheduler.assignments(now=1.5) == [(0, Task("b"))]
    scheduler.finished(0, "passed", now=2.0)
    assert scheduler.assignments(now=2.9) == []
    assert not scheduler.done()
    assert scheduler.assignments(now=3.0) == [(0, Task("a", 2))]
    # The second retry waits delay * backoff.
    scheduler.finished(0, "failed", now=4.0)
    assert scheduler.assignments(now=9.9) == []
    assert scheduler.assignments(now=10.0) == [(0, Task("a", 3))]


def test_a_retry_delay_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        RetryDelay(-1.0)
    with pytest.raises(ValueError, match="backoff above 0"):
        RetryDelay(1.0, 0.0)


# -- pytest-repeat ------------------------------------------------------------------------------
def test_count_makes_n_items_per_flow_with_their_own_slug_directories(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "login"\ncommand = ["sh", "-c", "test $RUNSET_SLUG != login-2"]\n'
        '[[flows]]\nname = "login-1"\ncommand = ["true"]\n'
    )
    args = stand_in(pytester, "repeat")
    collected = run(pytester, *args, "--runset", "run-set.toml", "--count", "3", "--co", "-q")
    collected.stdout.fnmatch_lines(
        [
            "run-set.toml::login[[]1-3[]]",
            "run-set.toml::login[[]2-3[]]",
            "run-set.toml::login[[]3-3[]]",
            "run-set.toml::login-1[[]1-3[]]",
            "run-set.toml::login-1[[]2-3[]]",
            "run-set.toml::login-1[[]3-3[]]",
        ]
    )
    result = pytester.runpytest_subprocess(
        *args, "--runset", "run-set.toml", "--count", "3", "--runset-run-id", "c"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["FAILED run-set.toml::login[[]2-3[]] - failed: exit code 1*"])
    report = load_report(pytester.path / "runset-results" / "c")
    slugs = [flow["slug"] for flow in report["flows"]]
    # Only the copies have directories; the flow literally named login-1 has its own three.
    assert slugs == ["login-1", "login-2", "login-3", "login-1-1", "login-1-2", "login-1-3"]
    assert {flow["slug"] for flow in report["flows"] if flow["status"] == "failed"} == {"login-2"}
    # -k picks one repetition; --lf reruns only the one that failed.
    picked = run(
        pytester,
        *args,
        "--runset",
        "run-set.toml",
        "--count",
        "3",
        "-k",
        "login and 3-3",
        "--co",
        "-q",
    )
    picked.stdout.fnmatch_lines(
        [
            "run-set.toml::login[[]3-3[]]",
            "run-set.toml::login-1[[]3-3[]]",
            "2/6 tests collected (4 deselected)*",
        ]
    )
    again = pytester.runpytest_subprocess(*args, "--runset", "run-set.toml", "--count", "3", "--lf")
    again.stdout.fnmatch_lines(["*1 failed, 5 deselected*"])


def test_repeated_keeps_flows_alone_without_count(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    assert repeated(config, []) == []


def test_repeat_scope_other_than_function_is_refused(
    pytester: pytest.Pytester, runset: Path
) -> None:
    args = stand_in(pytester, "repeat")
    result = run(
        pytester, *args, "--runset", "run-set.toml", "--count", "2", "--repeat-scope", "session"
    )
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        ["ERROR: --repeat-scope session (pytest-repeat): flows repeat one by one*"]
    )


# -- pytest-playwright --------------------------------------------------------------------------
def test_playwright_options_map_onto_the_browser_options(pytester: pytest.Pytester) -> None:
    args = stand_in(pytester, "playwright")
    config = pytester.parseconfigure(
        *args, "--browser", "firefox", "--headed", "--tracing", "off", "--video", "on",
        "--screenshot", "on", "--base-url", "http://127.0.0.1:9",
    )  # fmt: skip
    option = config.option
    assert option.runset_browser == "firefox"
    assert option.runset_headed is True
    # Given explicitly, "off" wins over pytest-runset's default (retain-on-failure).
    assert option.runset_trace == "off"
    assert option.runset_video == "on"
    assert option.runset_screenshot == "on"
    assert option.runset_base_url == "http://127.0.0.1:9"
    # Not given: pytest-runset's defaults stay (pytest-playwright's would turn traces off).
    config = pytester.parseconfigure(*args)
    assert (config.option.runset_trace, config.option.runset_screenshot) == (
        "retain-on-failure",
        "only-on-failure",
    )
    # pytest-runset's own win when both are given.
    both = ["--tracing", "on", "--runset-trace", "off", "--browser", "webkit"]
    config = pytester.parseconfigure(*args, *both, "--runset-browser", "chromium")
    assert (config.option.runset_trace, config.option.runset_browser) == ("off", "chromium")


def test_options_given_through_addopts_count_as_given(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = stand_in(pytester, "playwright")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--tracing=on")
    pytester.makeini("[pytest]\naddopts = --video on\n")
    config = pytester.parseconfigure(*args)
    assert given(config, "--tracing")
    assert given(config, "--video")
    assert not given(config, "--screenshot")
    assert (config.option.runset_trace, config.option.runset_video) == ("on", "on")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--slowmo", "-5"],
            "--slowmo -5 (pytest-playwright): must be 0 or more milliseconds",
        ),
        (
            ["--browser", "chromium", "--browser", "firefox"],
            "--browser chromium --browser firefox (pytest-playwright): flows run in one browser "
            "per session; give one --browser (or --runset-browser NAME)",
        ),
        (
            ["--output", "artifacts"],
            "--output artifacts (pytest-playwright): pytest-playwright empties that directory "
            "when the session starts, so flows cannot keep their runs there; give "
            "--runset-output DIR (a directory of its own)",
        ),
        (
            ["--full-page-screenshot"],
            "--full-page-screenshot (pytest-playwright): flows' screenshots show the viewport "
            "(no pytest-runset equivalent; --runset-screenshot on|off|only-on-failure); drop it",
        ),
    ],
)
def test_playwright_options_flows_cannot_honour_are_refused(
    pytester: pytest.Pytester, runset: Path, option: list[str], message: str
) -> None:
    args = stand_in(pytester, "playwright")
    result = run(pytester, *args, "--runset", "run-set.toml", *option)
    assert result.ret == 4, result.stdout.str()
    assert [line for line in result.stderr.lines if line.startswith("ERROR:")] == [
        f"ERROR: {message}"
    ]


def test_refusals_wait_for_flows_collected_by_their_file_name(
    pytester: pytest.Pytester, runset: Path
) -> None:
    """A run-set found by its name (no --runset) makes the session one with flows too."""
    args = stand_in(pytester, "playwright")
    result = run(pytester, *args, "--device", "Pixel 55")
    assert result.ret == 4
    # The closest names come from the installed Playwright's device list.
    result.stderr.fnmatch_lines(
        ["ERROR: --device Pixel 55 (pytest-playwright): unknown device 'Pixel 55' (closest: *)"]
    )
    runset.unlink()
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    assert run(pytester, *args, "--device", "Pixel 55").ret == 0


def test_device_slowmo_and_channel_become_every_browser_flows_options(
    pytester: pytest.Pytester,
) -> None:
    """pytest-playwright's --device, --slowmo and --browser-channel override the run-set's
    browser options (engine/browser_spec.py applies them to each attempt)."""
    args = stand_in(pytester, "playwright")
    more = ["--device", "Pixel 5", "--slowmo", "250", "--browser-channel", "chrome"]
    config = pytester.parseconfigure(*args, *more, "--browser", "firefox")
    assert config.option.runset_browser_overrides == {
        "name": "firefox",
        "channel": "chrome",
        "slow_mo": 250.0,
        "device": "Pixel 5",
    }
    # Nothing given: the run-set decides (its [runset.browser] name included).
    assert pytester.parseconfigure(*args).option.runset_browser_overrides == {}


def test_browser_option_reaches_browser_flows(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    """--browser webkit (mapped) is what a browser flow asks its worker for."""
    write_runset('[[flows]]\nname = "page"\nsteps = [{ goto = "about:blank" }]\n')
    args = stand_in(pytester, "playwright")
    result = run(pytester, *args, "--runset", "run-set.toml", "--browser", "webkit")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*webkit*"])


def test_no_refusals_without_the_plugins(pytester: pytest.Pytester) -> None:
    assert refusals(pytester.parseconfigure()) == []

"""Under pytest-xdist: flow fixtures, collection errors of broken run-sets and ``-v``'s words
behave as in pytest-runset's own loop (see tests/session/test_flow_fixtures.py,
tests/session/test_collect.py and tests/session/test_teststatus.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

# xdist.plugin, not xdist: without pytest-xdist installed, "xdist" alone would import this test
# folder (tests/ is on sys.path) as a namespace package.
pytest.importorskip("xdist.plugin", reason="needs pytest-xdist (tox -e xdist, .ci/run)")

CONFTEST = """
import json, pathlib, pytest

HERE = pathlib.Path(__file__).parent

def log(**event):
    with (HERE / "events.jsonl").open("a") as out:
        out.write(json.dumps(event) + "\\n")

@pytest.fixture(autouse=True)
def per_flow(request):
    log(event="setup", node=request.node.nodeid)
    yield
    log(event="teardown", node=request.node.nodeid)

@pytest.fixture
def database():
    raise RuntimeError("database is down")

def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("database"):
            item.add_marker(pytest.mark.usefixtures("database"))
"""

RUNSET = """
[[flows]]
name = "plain"
command = ["true"]

[[flows]]
name = "needs database"
command = ["true"]
tags = ["database"]
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=240)


def test_flow_fixtures_run_in_xdist_workers_as_for_tests(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    pytester.makeconftest(CONFTEST)
    write_runset(RUNSET)
    result = run(pytester, "-n", "2", "--runset-run-id", "xf", "-rA")
    assert result.ret == 1, result.stdout.str()
    lines = (pytester.path / "events.jsonl").read_text().splitlines()
    seen = sorted((event["event"], event["node"]) for event in map(json.loads, lines))
    assert seen == [
        ("setup", "run-set.toml::needs-database"),
        ("setup", "run-set.toml::plain"),
        ("teardown", "run-set.toml::needs-database"),
        ("teardown", "run-set.toml::plain"),
    ]
    result.stdout.fnmatch_lines(["ERROR run-set.toml::needs-database - RuntimeError: database*"])
    report = json.loads((pytester.path / "runset-results/xf/report.json").read_text())
    flows = {flow["name"]: flow for flow in report["flows"]}
    assert flows["plain"]["status"] == "passed"
    assert flows["needs database"]["status"] == "error"
    assert flows["needs database"]["message"].startswith("fixture 'database' (conftest.py:")


def test_a_broken_run_set_is_a_collection_error_under_xdist(pytester: pytest.Pytester) -> None:
    # What pytest-xdist does with a Python file that has a syntax error...
    pytester.makepyfile(test_bad="def test_x(:\n    pass\n", test_ok="def test_ok():\n    pass\n")
    python = run(pytester, "-n", "2", "test_bad.py", "test_ok.py")
    python.stdout.fnmatch_lines(["*ERROR collecting test_bad.py*"])
    # ... it does with a broken run-set: that file's collection error, no usage error.
    (pytester.path / "run-set.toml").write_text('[[flows]]\nname = "x"\ncommand = "echo"\n')
    (pytester.path / "ok.runset.toml").write_text('[[flows]]\nname = "ok"\ncommand = ["true"]\n')
    result = run(pytester, "-n", "2", "run-set.toml", "ok.runset.toml")
    assert result.ret == python.ret, result.stdout.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(
        ["*ERROR collecting run-set.toml*", "run-set.toml: flow #1 'x', field 'command': *"]
    )
    assert python.parseoutcomes() == result.parseoutcomes() == {"passed": 1, "errors": 1}


def test_verbose_says_timeout_and_flaky_under_xdist(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "slow"\ncommand = ["sleep", "5"]\ntimeout = "1s"\nkill_grace = "0s"\n'
        '[[flows]]\nname = "wobbly"\n'
        "command = 'if [ \"$RUNSET_ATTEMPT\" = 1 ]; then exit 1; fi'\nshell = true\nretries = 1\n"
    )
    result = run(pytester, "-n", "2", "-v")
    assert result.ret == 1, result.stdout.str()
    result.stdout.re_match_lines([r"\[gw\d\] \[ *\d+%\] TIMEOUT run-set\.toml::slow"])
    result.stdout.re_match_lines([r"\[gw\d\] \[ *\d+%\] FLAKY run-set\.toml::wobbly"])
    result.stdout.re_match_lines([r"=+ 1 failed, 1 passed in "])


def test_a_failing_spec_step_names_its_line_in_the_spec_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    """As on pytest-runset's own workers (tests/test_ide_clients.py): the failure text
    points at the failing step's line in the spec file."""
    (pytester.path / "flows").mkdir()
    (pytester.path / "flows" / "journey.toml").write_text(
        'steps = [\n  { goto = "data:text/html,<h1>Welcome</h1>" },\n\n'
        '  { expect_text = "h2", text = "Welcome", timeout = "1s" },\n]\n',
        encoding="utf-8",
    )
    pytester.makefile(
        ".toml",
        **{"run-set": '[[flows]]\nname = "journey"\nspec = "flows/journey.toml"\n'},
    )
    result = run(pytester, "--runset", "run-set.toml", "-n", "1", "--junitxml=j.xml")
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*failing step at flows/journey.toml:4*"])
    assert "failing step at flows/journey.toml:4" in (pytester.path / "j.xml").read_text()

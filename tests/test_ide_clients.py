"""What IDE test clients receive, through re-implementations of their documented contracts.

VS Code's pytest adapter (vscode-python, ``python_files/vscode_pytest``) learns of a test's
outcome in exactly three places: ``pytest_report_teststatus`` for a ``call`` report or a
skipped ``setup`` report, and ``pytest_exception_interact`` for anything else that failed (a
setup error is delivered only there). Each node id is sent once. The plugin below does the
same and writes what it would send over the adapter's pipe to a JSON-lines file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

VSCODE_ADAPTER = """
import json, os
import pytest

SENT = set()

def _send(nodeid, outcome, message):
    if nodeid in SENT:
        return
    SENT.add(nodeid)
    with open(os.environ["ADAPTER_OUT"], "a") as out:
        out.write(json.dumps({"test": nodeid, "outcome": outcome, "message": message}) + "\\n")

@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_report_teststatus(report, config):
    if report.when == "call" or (report.when == "setup" and report.skipped):
        outcome, message = "skipped", None
        if report.passed:
            outcome = "success"
        elif report.failed:
            outcome, message = "failure", report.longreprtext
        _send(report.nodeid, outcome, message)
    yield

def pytest_exception_interact(node, call, report):
    outcome = "failure" if call.excinfo.typename == "AssertionError" else "error"
    _send(node.nodeid, outcome, report.longreprtext)
"""

RUNSET = """\
[runset]
timeout = "20s"

[[flows]]
name = "passes"
command = ["true"]

[[flows]]
name = "fails"
command = ["sh", "-c", "echo 'expected 3, got 4'; exit 2"]

[[flows]]
name = "cannot start"
command = ["true"]
cwd = "no-such-directory"

[[flows]]
name = "skipped"
command = ["true"]
skip = "not today"
"""


def test_vs_code_hears_of_every_flow_once_errors_included(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(VSCODE_ADAPTER)
    pytester.makefile(".toml", **{"run-set": RUNSET})
    out = pytester.path / "adapter.jsonl"
    monkeypatch.setenv("ADAPTER_OUT", str(out))
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "-p", "no:cacheprovider")
    assert result.ret == 1
    sent = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_flow = {entry["test"].split("::")[-1]: entry for entry in sent}
    assert len(sent) == len(by_flow) == 4
    assert by_flow["passes"]["outcome"] == "success"
    assert by_flow["fails"]["outcome"] == "failure"
    # The cause a command printed only on stdout reaches the IDE.
    assert "expected 3, got 4" in by_flow["fails"]["message"]
    assert by_flow["cannot-start"]["outcome"] == "error"
    assert "no-such-directory" in by_flow["cannot-start"]["message"]
    assert by_flow["skipped"]["outcome"] == "skipped"


def test_a_fixture_error_and_a_flow_error_arrive_alike(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        VSCODE_ADAPTER
        + "\n@pytest.fixture\ndef broken():\n    raise RuntimeError('fixture broke')\n"
    )
    pytester.makepyfile(test_plain="def test_uses(broken):\n    pass\n")
    pytester.makefile(".toml", **{"run-set": RUNSET})
    out = Path(pytester.path / "adapter.jsonl")
    monkeypatch.setenv("ADAPTER_OUT", str(out))
    pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "test_plain.py", "-p", "no:cacheprovider"
    )
    sent = {
        json.loads(line)["test"].split("::")[-1]: json.loads(line)
        for line in out.read_text(encoding="utf-8").splitlines()
    }
    assert sent["test_uses"]["outcome"] == "error"
    assert sent["cannot-start"]["outcome"] == "error"


SPEC = """\
# A journey on an inline page: the second step cannot find its heading.
steps = [
  { goto = "data:text/html,<h1>Welcome</h1>" },

  # "{ goto" in a comment is no step.
  { expect_text = "h2", text = "Welcome", timeout = "1s" },
]
"""


def test_a_failing_spec_step_points_at_its_line_in_the_spec(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The item stays at its ``[[flows]]`` header (the IDE's tree), while the failure text and
    its one-line crash (``--tb=line``, junitxml) name the spec file and the failing step's line."""
    pytester.makeconftest(VSCODE_ADAPTER)
    (pytester.path / "flows").mkdir()
    (pytester.path / "flows" / "journey.toml").write_text(SPEC, encoding="utf-8")
    pytester.makefile(
        ".toml",
        **{
            "run-set": '[runset]\ntimeout = "60s"\n\n[[flows]]\nname = "journey"\n'
            'spec = "flows/journey.toml"\n'
        },
    )
    out = pytester.path / "adapter.jsonl"
    monkeypatch.setenv("ADAPTER_OUT", str(out))
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-p", "no:cacheprovider", "--tb=line", "--junitxml=j.xml"
    )
    assert result.ret == 1
    step_line = SPEC.splitlines().index(
        '  { expect_text = "h2", text = "Welcome", timeout = "1s" },'
    )
    step_line += 1
    assert step_line == 6
    where = f"flows/journey.toml:{step_line}"
    (sent,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sent["outcome"] == "failure"
    assert f"failing step at {where}" in sent["message"]
    result.stdout.fnmatch_lines([f"*{where}: failed: step 2/2 (expect_text*"])
    junit = (pytester.path / "j.xml").read_text(encoding="utf-8")
    assert f"failing step at {where}" in junit

"""Debugging a flow: with one callable flow selected, ``breakpoint()``, ``--pdb`` and ``--trace``
stop in pytest's debugger on the user's terminal (fed here through stdin), and the flow's result
is reported as usual. Anywhere else a debugger has no terminal, and the flow says so."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report

RUNSET = """
[runset]
name = "debugged"
[[flows]]
name = "stops"
callable = "flows.steps:stops"
[[flows]]
name = "fails"
callable = "flows.steps:fails"
[[flows]]
name = "prints"
callable = "flows.quiet:prints"
"""

FLOWS = """
def stops(flow_dir):
    answer = 41
    breakpoint()
    print("after the breakpoint", answer + 1)


def fails(flow_dir):
    expected = 7
    assert expected == 8, "seven is not eight"
"""


@pytest.fixture
def debuggable(pytester: pytest.Pytester, write_runset: Callable[..., Path]) -> Path:
    write_runset(RUNSET)
    package = pytester.path / "flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(FLOWS)
    (package / "quiet.py").write_text("def prints():\n    print('hello')\n")
    return pytester.path


def debug(pytester: pytest.Pytester, keys: str, *args: str) -> pytest.RunResult:
    """pytest with ``keys`` typed into its stdin (the terminal a debugger reads)."""
    return pytester.run(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:sugar",
        "--runset", "run-set.toml", "--runset-run-id", "d", *args,
        stdin=keys.encode(), timeout=120,
    )  # fmt: skip


def test_breakpoint_stops_in_the_debugger_and_continue_finishes_the_flow(
    pytester: pytest.Pytester, debuggable: Path
) -> None:
    result = debug(pytester, "p answer\nc\n", "-k", "stops", "-s")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*PDB set_trace*",
            "*flows/steps.py(5)stops()",
            "(Pdb) 41",
            "*PDB continue*",
            "after the breakpoint 42",
            "*1 passed, 2 deselected*",
        ]
    )
    report = load_report(debuggable / "runset-results" / "d")
    stops = flows_by_name(report)["stops"]
    assert (stops["status"], stops["worker"]) == ("passed", "main")


def test_quitting_the_debugger_ends_the_session_as_for_a_test(
    pytester: pytest.Pytester, debuggable: Path
) -> None:
    result = debug(pytester, "q\n", "-k", "stops", "-s")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*Exit: Quitting debugger*"])
    # The run still ends with its report.
    assert (debuggable / "runset-results" / "d" / "report.json").exists()


def test_pdb_opens_a_post_mortem_in_the_failing_flow(
    pytester: pytest.Pytester, debuggable: Path
) -> None:
    result = debug(pytester, "p expected\nc\n", "-k", "fails", "--pdb")
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*> traceback >*",
            ">       assert expected == 8, *",
            "E       AssertionError: seven is not eight",
            "*> entering PDB >*",
            "*flows/steps.py(10)fails()",
            "(Pdb) 7",
            "FAILED run-set.toml::fails - failed: AssertionError: seven is not eight",
        ]
    )
    # The traceback is the flow's, not pytest-runset's.
    assert "pytest_runset" not in result.stdout.str()


def test_trace_stops_at_the_first_line_of_the_flow(
    pytester: pytest.Pytester, debuggable: Path
) -> None:
    result = debug(pytester, "p flow_dir.name\nc\nc\n", "-k", "stops", "--trace")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*flows/steps.py(3)stops()", "-> answer = 41", "(Pdb) 'stops'"])


def test_a_debugger_on_a_worker_says_how_to_debug_instead_of_bdbquit(
    pytester: pytest.Pytester, debuggable: Path
) -> None:
    """Two flows selected: they run on workers, whose stdin is no terminal."""
    result = debug(pytester, "", "-s")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "failed: BdbQuit: a debugger in a flow on a worker has no terminal; select this one "
            "callable flow (-k) and run with -s, --pdb or --trace to debug it in the terminal"
        ]
    )


def test_s_alone_keeps_a_flow_without_a_debugger_call_on_its_worker(
    pytester: pytest.Pytester, debuggable: Path
) -> None:
    """``-s`` only shows output: a flow that stops in no debugger keeps its worker (and with it
    its timeout and containment), even when it is the only one selected."""
    result = debug(pytester, "", "-k", "prints", "-s")
    assert result.ret == 0, result.stdout.str()
    report = load_report(debuggable / "runset-results" / "d")
    assert flows_by_name(report)["prints"]["worker"] == "gw0"


def test_an_ide_debugger_in_the_process_runs_the_flow_there(
    pytester: pytest.Pytester, debuggable: Path
) -> None:
    """VS Code's and PyCharm's Debug Test run pytest under debugpy/pydevd: the one flow runs in
    that process, where their breakpoints are."""
    pytester.makeconftest(
        "import sys, types\nsys.modules.setdefault('debugpy', types.ModuleType('debugpy'))\n"
    )
    result = debug(pytester, "", "-k", "prints")
    assert result.ret == 0, result.stdout.str()
    report = load_report(debuggable / "runset-results" / "d")
    assert flows_by_name(report)["prints"]["worker"] == "main"

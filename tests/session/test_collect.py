"""Collection of run-set files: each flow is an item that points at its own line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_runset.session.collect import _flow_lines

RUNSET = """\
[runset]
name = "lines"


[[flows]]
name = "first"
command = ["true"]

  # a comment, then an indented header

  [[ flows ]]
name = "second"
command = ["true"]
"""


def test_each_flow_points_at_its_header_line_not_the_blank_lines_above(tmp_path: Path) -> None:
    path = tmp_path / "run-set.toml"
    path.write_text(RUNSET, encoding="utf-8")
    lines = RUNSET.splitlines()
    found = _flow_lines(path)
    assert [lines[index].strip() for index in found] == ["[[flows]]", "[[ flows ]]"]


def test_items_carry_the_header_line_as_their_location(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", **{"run-set": RUNSET})
    items, _ = pytester.inline_genitems("--runset", "run-set.toml")
    lines = RUNSET.splitlines()
    # pytest's locations are 0-based; IDEs add one.
    assert [lines[item.location[1]].strip() for item in items] == ["[[flows]]", "[[ flows ]]"]


# -- a broken run-set is that file's collection error ---------------------------------------------
BROKEN = '[[flows]]\nname = "shell-less"\ncommand = "echo hi"\n'
BROKEN_LINE = (
    "run-set.toml: flow #1 'shell-less', field 'command': "
    "a string command needs shell = true (or give an argv list)"
)
GOOD = '[[flows]]\nname = "fine"\ncommand = ["true"]\n'


def _tree(pytester: pytest.Pytester) -> None:
    """A broken run-set next to a good one and a Python test."""
    (pytester.path / "run-set.toml").write_text(BROKEN, encoding="utf-8")
    (pytester.path / "smoke.runset.toml").write_text(GOOD, encoding="utf-8")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")


def test_a_broken_run_set_is_a_collection_error_of_that_file_alone(
    pytester: pytest.Pytester,
) -> None:
    _tree(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    text = result.stdout.str() + result.stderr.str()
    # pytest's own handling of a collection error: exit 2 and nothing runs, as for a Python
    # file with a syntax error, never a usage error after the tree was collected.
    assert result.ret == pytest.ExitCode.INTERRUPTED, text
    assert "Traceback" not in text
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting run-set.toml*",
            BROKEN_LINE,
            "*short test summary info*",
            "ERROR run-set.toml",
            "*Interrupted: 1 error during collection*",
        ]
    )


def test_the_others_are_collected_and_run_with_continue_on_collection_errors(
    pytester: pytest.Pytester,
) -> None:
    _tree(pytester)
    listed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    listed.stdout.fnmatch_lines(["smoke.runset.toml::fine", "test_plain.py::test_plain"])
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--continue-on-collection-errors", "-rA"
    )
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "PASSED smoke.runset.toml::fine" in result.stdout.lines
    assert "PASSED test_plain.py::test_plain" in result.stdout.lines
    result.stdout.fnmatch_lines(["*2 passed, 1 error in *"])


def test_a_broken_run_set_named_with_runset_is_still_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    _tree(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--runset", "run-set.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: {BROKEN_LINE}" in result.stderr.lines

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

"""Where the steps of a spec file are written."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pytest_runset.model.spec_lines import step_lines

EXAMPLE = Path(__file__).parents[2] / "examples" / "flows" / "add-item.toml"


def test_each_inline_step_of_the_example_spec_is_found_on_its_line() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = step_lines(text)
    assert len(lines) == len(tomllib.loads(text)["steps"])
    source = text.splitlines()
    assert source[lines[0] - 1].strip() == '{ goto = "/login" },'
    assert all(source[line - 1].lstrip().startswith("{") for line in lines)


def test_braces_and_brackets_in_strings_and_comments_are_not_steps() -> None:
    text = (
        "# steps = [ { not = 'this' } ]\n"
        "steps = [ # { a comment }\n"
        '  { click = "a[href=\'{x}\']" }, { fill = "#q", value = """multi\n'
        '{ line }""" },\n'
        "  { expect_text = 'h1', text = '}' },\n"
        "  [ 'not', 'a', 'step' ],\n"
        '  { goto = "/{persona.username}" },\n'
        "]\n"
        "viewport = { width = 1, height = 2 }\n"
    )
    assert len(tomllib.loads(text)["steps"]) == 5
    assert step_lines(text) == [3, 3, 5, 7]


def test_steps_as_tables_are_found_at_their_headers() -> None:
    text = 'description = "x"\n\n[[steps]]\ngoto = "/"\n\n  [[ steps ]]\nclick = "#a"\n'
    assert step_lines(text) == [3, 6]


def test_a_file_without_steps_has_no_lines() -> None:
    assert step_lines('description = "x"\n') == []

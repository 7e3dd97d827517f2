"""``matrix`` on a flow: expansion, placeholders, environment, tags and one-line errors.
See DESIGN.md, "Experiments: matrices and grouped metrics"."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_runset.model.flows import RunSet, RunsetError
from pytest_runset.model.loader import parse_runset
from pytest_runset.model.matrix import MAX_COMBINATIONS

FILE = Path("/project/run-set.toml")

# The example of docs/runset-file.md: 3 variants x 4 seeds, less one, plus one.
THREE_BY_FOUR = """
[runset.limits]
variant_b = 1

[[flows]]
name = "smoke"
command = ["true"]

[[flows]]
name = "trial {matrix.variant} seed {matrix.seed}"
command = ["python", "agent.py", "--variant", "{matrix.variant}", "--seed", "{matrix.seed}"]
tags = ["trial", "variant_{matrix.variant}"]
env = { OUT = "{flow_dir}/{matrix.variant}.json" }

[flows.matrix]
variant = ["a", "b", "c"]
seed = { range = [1, 5] }
exclude = [{ variant = "c", seed = 4 }]
include = [{ variant = "d", seed = 1 }]
"""


def parse(text: str) -> RunSet:
    return parse_runset(FILE, textwrap.dedent(text).encode(), display="run-set.toml")


def error_of(text: str) -> str:
    with pytest.raises(RunsetError) as excinfo:
        parse(text)
    message = str(excinfo.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("run-set.toml: "), message
    return message


def test_a_three_by_four_matrix_with_an_exclude_and_an_include() -> None:
    runset = parse(THREE_BY_FOUR)
    trials = runset.flows[1:]
    expected = [(v, s) for v in "abc" for s in (1, 2, 3, 4) if (v, s) != ("c", 4)] + [("d", 1)]
    assert [(f.matrix or {}).get("variant") for f in trials] == [v for v, _ in expected]
    assert [(f.matrix or {}).get("seed") for f in trials] == [s for _, s in expected]
    assert [f.name for f in trials] == [f"trial {v} seed {s}" for v, s in expected]
    assert [f.slug for f in trials] == [f"trial-{v}-seed-{s}" for v, s in expected]
    for flow, (variant, seed) in zip(trials, expected, strict=True):
        assert flow.command == ("python", "agent.py", "--variant", variant, "--seed", str(seed))
        assert flow.tags == ("trial", f"variant_{variant}")
        assert flow.env == {
            "OUT": f"{{flow_dir}}/{variant}.json",
            "RUNSET_MATRIX_VARIANT": variant,
            "RUNSET_MATRIX_SEED": str(seed),
        }
        assert flow.position == 1
    assert [f.index for f in runset.flows] == list(range(13))
    smoke = runset.flows[0]
    assert (smoke.matrix, smoke.table_position) == (None, 0)
    assert len({f.sha256 for f in runset.flows}) == 13


def test_values_of_every_kind_and_where_they_are_filled_in() -> None:
    runset = parse(
        """
        [personas.p_true]
        user = "t"
        [personas.p_false]
        user = "f"

        [[flows]]
        name = "{matrix.on} {matrix.ratio}"
        steps = [{ goto = "/{matrix.on}?r={matrix.ratio}" }]
        persona = "p_{matrix.on}"
        description = "ratio {matrix.ratio}"
        matrix = { on = [true, false], ratio = [0.5] }
        """
    )
    assert [f.name for f in runset.flows] == ["true 0.5", "false 0.5"]
    assert [f.persona for f in runset.flows] == ["p_true", "p_false"]
    assert runset.flows[0].steps[0]["target"] == "/true?r=0.5"
    assert runset.flows[1].description == "ratio 0.5"
    assert runset.flows[0].matrix == {"on": True, "ratio": 0.5}


def test_braces_in_a_value_never_become_placeholders() -> None:
    (flow,) = parse(
        """
        [[flows]]
        name = "echo {matrix.text}"
        command = ["echo", "{matrix.text}", "{{matrix.text}}"]
        matrix = { text = ["{port}"] }
        """
    ).flows
    assert flow.name == "echo {port}"
    # Doubled braces: a template still says "{port}" literally, filled in at dispatch.
    assert flow.command == ("echo", "{{port}}", "{{matrix.text}}")
    assert flow.env["RUNSET_MATRIX_TEXT"] == "{{port}}"


def test_a_definition_hash_belongs_to_its_combination() -> None:
    """Adding a seed leaves the other combinations' hashes alone (resume keeps them)."""
    template = """
        [[flows]]
        name = "t {{matrix.seed}}"
        command = ["true"]
        matrix = {{ seed = {seeds} }}
        """
    before = {f.name: f.sha256 for f in parse(template.format(seeds="[1, 2]")).flows}
    after = {f.name: f.sha256 for f in parse(template.format(seeds="[1, 2, 3]")).flows}
    assert after["t 1"] == before["t 1"]
    assert after["t 2"] == before["t 2"]
    assert len(set(after.values())) == 3


def test_an_include_that_is_already_there_is_not_added_twice() -> None:
    runset = parse(
        """
        [[flows]]
        name = "t {matrix.a}"
        command = ["true"]
        matrix = { a = [1, 2], include = [{ a = 2 }, { a = 3 }] }
        """
    )
    assert [f.name for f in runset.flows] == ["t 1", "t 2", "t 3"]


@pytest.mark.parametrize(
    ("matrix", "fragment"),
    [
        (
            '{ v = ["a"], include = [{ w = 1 }] }',
            "field 'matrix.include[0]': unknown axis 'w' (axes: v)",
        ),
        (
            '{ v = ["a"], exclude = [{ v = "a" }, { vv = 1 }] }',
            "field 'matrix.exclude[1]': unknown axis 'vv' (axes: v)",
        ),
        (
            '{ v = ["a"], s = [1], include = [{ v = "b" }] }',
            "field 'matrix.include[0]': give a value for every axis (missing: s)",
        ),
        ('{ v = ["a"], exclude = [{}] }', "an empty table would exclude every combination"),
        (
            "{ a = { range = [0, 1000] }, b = { range = [0, 101] } }",
            "field 'matrix': 101,000 combinations; at most 100,000 per flow",
        ),
        ("{ v = [[1]] }", "field 'matrix.v[0]': must be a boolean or an integer or a number"),
        ("{ v = { range = [1] } }", "field 'matrix.v.range': must be [start, stop]"),
        ('{ v = "abc" }', "field 'matrix.v': must be an array, not a string"),
        ("{ v = [] }", "axis 'v' has no values"),
        ("{ v = { range = [3, 3] } }", "axis 'v' has no values"),
        ("{}", "give at least one axis"),
        ("3", "field 'matrix': must be a table, not an integer"),
        ('{ "a-b" = [1] }', "axis 'a-b': use letters, digits and '_'"),
        ("{ v = [1], V = [2] }", "axes 'v' and 'V' would share RUNSET_MATRIX_V"),
        ("{ v = [nan] }", "axis 'v': nan is not a finite number"),
    ],
)
def test_matrix_errors_are_one_line_naming_the_table(matrix: str, fragment: str) -> None:
    message = error_of(
        f"""
        [[flows]]
        name = "first"
        command = ["true"]

        [[flows]]
        name = "t {{matrix.v}}"
        command = ["true"]
        matrix = {matrix}
        """
    )
    assert message.startswith("run-set.toml: flow #2 't {matrix.v}', "), message
    assert fragment in message


def test_too_many_combinations_are_refused_before_they_are_built() -> None:
    message = error_of(
        """
        [[flows]]
        name = "t {matrix.a}"
        command = ["true"]
        matrix = { a = { range = [0, 1000000000] } }
        """
    )
    assert f"at most {MAX_COMBINATIONS:,}" in message


def test_duplicate_expanded_names_are_refused() -> None:
    message = error_of(
        """
        [[flows]]
        name = "trial {matrix.variant}"
        command = ["true"]
        matrix = { variant = ["a", "b"], seed = [1, 2] }
        """
    )
    assert message == (
        "run-set.toml: flow #1 'trial {matrix.variant}', field 'name': 'trial a' is the name of "
        'both {variant = "a", seed = 1} and {variant = "a", seed = 2}; put every axis in the '
        "name (e.g. {matrix.<axis>}) so each flow has its own"
    )


def test_an_unknown_axis_in_a_placeholder() -> None:
    message = error_of(
        """
        [[flows]]
        name = "t {matrix.v}"
        command = ["echo", "{matrix.seed}"]
        matrix = { v = [1] }
        """
    )
    assert message.endswith(
        "flow #1 't {matrix.v}', field 'command[1]': unknown matrix axis {matrix.seed} (axes: v)"
    )


def test_a_matrix_placeholder_without_a_matrix() -> None:
    message = error_of(
        """
        [[flows]]
        name = "t"
        command = ["echo", "{matrix.seed}"]
        """
    )
    assert message.endswith(
        "field 'command[1]': placeholder {matrix.seed} needs a matrix on the flow"
    )


def test_problems_of_expanded_flows_name_the_table_and_the_expanded_flow() -> None:
    """The flow number counts tables of the file; the name says which combination."""
    text = """
        [[flows]]
        name = "m {matrix.a}"
        command = ["true"]
        matrix = { a = [1, 2, 3] }

        [[flows]]
        name = "n {matrix.t}"
        command = ["true"]
        timeout = "{matrix.t}"
        matrix = { t = ["5s", "soon"] }
        """
    message = error_of(text)
    assert message.startswith("run-set.toml: flow #2 'n soon', field 'timeout': 'soon' is not"), (
        message
    )
    message = error_of(text.replace('"soon"', '"5m"') + '\n        comand = ["x"]\n')
    # Both expanded flows have the typo: the first is named, the other counted.
    assert message == (
        "run-set.toml: flow #2 'n 5s', field 'comand': unknown key (typo?) (and 1 more problem)"
    )
    message = error_of(
        text.replace('"soon"', '"5m"')
        + '\n        [[flows]]\n        name = "x"\n        command = ["{port}"]\n'
    )
    assert message.startswith("run-set.toml: flow #3 'x', field 'command[0]'"), message


def test_tags_from_values_must_still_be_marker_names() -> None:
    message = error_of(
        """
        [[flows]]
        name = "t {matrix.v}"
        command = ["true"]
        tags = ["v-{matrix.v}"]
        matrix = { v = ["a"] }
        """
    )
    assert "flow #1 't a', field 'tags'" in message
    assert "tag 'v-a' is not usable as a pytest marker" in message

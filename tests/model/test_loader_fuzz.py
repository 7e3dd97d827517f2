"""Hostile run-set files: whatever the bytes, loading gives a RunSet or one clear line.

Three generators, 600+ cases in all: random bytes, random valid TOML shaped like a run-set
(with wrong types, unknown keys, odd names and placeholders), and random mutations of the
example run-set. A few of each also go through a real pytest process to prove exit code 4 and
no traceback end to end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_runset.model.flows import RunSet, RunsetError
from pytest_runset.model.loader import parse_runset

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "examples" / "run-set.toml").read_bytes()
SLUG = re.compile(r"^[a-z0-9._-]{1,64}$")
FAKE_PATH = Path("/fuzz/run-set.toml")


def _check(data: bytes) -> RunSet | None:
    """Load ``data``; only a RunSet or a one-line RunsetError naming the file may come out."""
    try:
        runset = parse_runset(FAKE_PATH, data, display="fuzz/run-set.toml")
    except RunsetError as exc:
        text = str(exc)
        assert text.startswith("fuzz/run-set.toml: "), text
        assert "\n" not in text, text
        assert "\r" not in text, text
        assert "Traceback" not in text
        return None
    slugs = [flow.slug for flow in runset.flows]
    assert len(set(slugs)) == len(slugs)
    assert all(SLUG.match(slug) and slug not in (".", "..") for slug in slugs)
    assert all(flow.timeout_s > 0 for flow in runset.flows)
    return runset


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(value)


def _toml(document: dict[str, Any]) -> bytes:
    lines = []
    for key, value in document.get("runset", {}).items():
        if not lines:
            lines.append("[runset]")
        lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    for flow in document.get("flows", []):
        lines.append("[[flows]]")
        lines.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in flow.items())
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    safe_text,
    st.sampled_from(["90s", "15m", "1h30m", "0", "-1s", "soon", "{port}", "{slug}", "{{x}}", "}"]),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=4), st.dictionaries(safe_text, scalars, max_size=3)
)
flow_keys = st.sampled_from(
    ["name", "command", "shell", "cwd", "env", "tags", "timeout", "kill_grace", "retries",
     "skip", "xfail", "description", "comand", "steps", "ports", "persona"]
)  # fmt: skip
runset_keys = st.sampled_from(
    ["name", "concurrency", "timeout", "kill_grace", "output", "retries", "base_url", "env",
     "bogus"]
)  # fmt: skip
plausible_flow = st.fixed_dictionaries(
    {
        "name": st.one_of(safe_text, st.sampled_from(["../x", "A", "a", "x" * 300, "!!!"])),
        "command": st.one_of(st.lists(safe_text, min_size=1, max_size=3), safe_text),
    },
    optional={"shell": st.booleans(), "tags": st.lists(safe_text, max_size=3)},
)
documents = st.fixed_dictionaries(
    {
        "runset": st.dictionaries(runset_keys, values, max_size=4),
        "flows": st.lists(
            st.one_of(plausible_flow, st.dictionaries(flow_keys, values, max_size=5)),
            max_size=5,
        ),
    }
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_valid_toml_shaped_like_a_runset(document: dict[str, Any]) -> None:
    _check(_toml(document))


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(EXAMPLE)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        position = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "duplicate"]))
        if action == "flip" and data:
            data[position] = draw(st.integers(min_value=0, max_value=255))
        elif action == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=20))]
        elif action == "insert":
            data[position:position] = draw(
                st.sampled_from([b"{", b"}", b'"', b"[[flows]]\n", b"\x00", b"\xff", b"=", b"\n"])
            )
        else:
            end = position + draw(st.integers(min_value=1, max_value=80))
            data[position:position] = data[position:end]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_random_mutations_of_the_example(data: bytes) -> None:
    _check(data)


def test_the_example_itself_loads() -> None:
    # At its real place: its spec files and callables are found relative to it.
    runset = parse_runset(REPO / "examples" / "run-set.toml", EXAMPLE)
    assert len(runset.flows) >= 5


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe[runset]",
        b"[[flows]]\nname = 1\n",
        b'[[flows]]\nname = "x"\ncommand = ["{"]\n',
        EXAMPLE.replace(b"[[flows]]", b"[[flow]]", 1),
        EXAMPLE.replace(b'timeout = "2m"', b'timeout = "-2m"'),
        b'[[flows]]\nname = "a/b\\u0000c"\ncommand = ["true"]\ncomand = 1\n',
    ],
)
def test_hostile_files_end_to_end_give_exit_4_and_one_line(
    pytester: pytest.Pytester, data: bytes
) -> None:
    (pytester.path / "run-set.toml").write_bytes(data)
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "-p", "no:cacheprovider")
    assert result.ret == 4
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: run-set.toml: ")]
    assert len(errors) == 1, output

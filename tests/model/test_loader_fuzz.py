"""Hostile run-set files: whatever the bytes, loading gives a RunSet or one clear line.

Over 2 000 cases per run: three hypothesis generators (random bytes, random valid TOML shaped
like a run-set with wrong types, unknown keys, odd names and placeholders, and random mutations
of the example run-set), 1 400 seeded hostile run-sets (nesting 65 to 1 000 levels deep in any
field, integers of up to 6 000 digits, bytes that are not UTF-8, NUL bytes, overlong strings,
duplicate keys, mutations of the example), nesting at fixed depths, and special files (a FIFO,
``/dev/zero``, a directory, a symbolic-link loop) as run-set or spec file. A few of each also
go through a real pytest process to prove exit code 4 and no traceback end to end.

The seeded cases use ``RUNSET_FUZZ_SEED`` (default: a fixed seed, so CI is repeatable); a
failure names the seed and the case, and setting the variable replays it or explores further.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_runset.model.flows import RunSet, RunsetError
from pytest_runset.model.loader import load_runset, parse_runset

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
        b'[[flows]]\nname = "f"\ncommand = ["true"]\nenv = { X = '
        + b"[" * 1000
        + b"]" * 1000
        + b" }\n",
        b'[[flows]]\nname = "f"\ncommand = ["true"]\ntimeout = ' + b"9" * 5000 + b"\n",
        b'[[flows]]\nname = "caf\xe9"\ncommand = ["true"]\n',
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


# --- seeded hostile run-sets ---------------------------------------------------------------------

FUZZ_SEED = int(os.environ.get("RUNSET_FUZZ_SEED", "20261202"))
SEEDED_CASES = 1400
# Where a hostile value goes: every kind of place a run-set has values.
_PLACES = (
    "[runset]\ntimeout = {v}\n",
    "[runset]\nconcurrency = {v}\n",
    "[runset]\nenv = {{ A = {v} }}\n",
    "[runset.ports]\nrange = {v}\n",
    "[runset.limits]\nbrowser = {v}\n",
    "[personas.alice]\nusername = {v}\n",
    "[persona_pools]\nbuyers = {v}\n",
    '[[flows]]\nname = "f"\ncommand = {v}\n',
    '[[flows]]\nname = {v}\ncommand = ["true"]\n',
    '[[flows]]\nname = "f"\ncommand = ["true"]\ntags = {v}\n',
    '[[flows]]\nname = "f"\ncommand = ["true"]\ntimeout = {v}\n',
    '[[flows]]\nname = "f"\ncommand = ["true"]\nretries = {v}\n',
    '[[flows]]\nname = "f"\ncommand = ["true"]\nports = {v}\n',
    '[[flows]]\nname = "f"\ncommand = ["true"]\nenv = {{ X = {v} }}\n',
    '[[flows]]\nname = "f"\ncommand = ["true"]\nmetadata = {v}\n',
    '[[flows]]\nname = "f"\nsteps = [{{ goto = "/" }}, {{ fill = "#a", value = {v} }}]\n',
    '[[flows]]\nname = "f"\nsteps = {v}\n',
    '[[flows]]\nname = "f"\ncommand = ["true"]\nbrowser = {v}\n',
)
_ODD_SCALARS = (
    "nan", "inf", "-inf", "1e999", "-0.0", "0x7fffffffffffffff", "1979-05-27", '"\\u0000"',
    '"\\ud800"', "'''\n'''", '"a\\tb"', "true", "[]", "{}",
)  # fmt: skip
_NOT_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00", b"\xfe\xff", b"\x80" * 5)
_ODD_DOCUMENTS = (
    '[[flows]]\nname = "a"\nname = "b"\ncommand = ["true"]\n',
    '[runset]\n[runset]\n[[flows]]\nname = "a"\ncommand = ["true"]\n',
    '[[flows]]\r\nname = "a"\r\ncommand = ["true"]\r\n',
    '\ufeff[[flows]]\nname = "a"\ncommand = ["true"]\n',
    "[flows]\nname = 1\n",
    "flows = 3\n",
)


def _nested(rng: random.Random, depth: int) -> str:
    """A TOML value nested ``depth`` levels deep: arrays, inline tables or both, some unclosed."""
    shape = rng.choice(["array", "table", "mixed"])
    opened = [
        "[" if shape == "array" or (shape == "mixed" and level % 2 == 0) else "{ k = "
        for level in range(depth)
    ]
    closing = "".join("]" if part == "[" else " }" for part in reversed(opened))
    if rng.random() < 0.1:
        closing = closing[: rng.randrange(len(closing))]  # unclosed: invalid TOML
    return "".join(opened) + rng.choice(["1", '"x"', "true", "[]", "{}"]) + closing


def _huge_integer(rng: random.Random) -> str:
    digits = rng.choice([19, 20, 40, 300, 4299, 4301, 6000])
    number = str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=digits - 1))
    return rng.choice(["", "-", "+"]) + number


def _hostile_value(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return _nested(rng, rng.randint(65, 1000))
    if kind == 1:
        return _nested(rng, rng.randint(1, 64))
    if kind == 2:
        return _huge_integer(rng)
    if kind == 3:
        return "[" + ", ".join(_huge_integer(rng) for _ in range(rng.randint(1, 3))) + "]"
    if kind == 4:
        return json.dumps("x" * rng.choice([300, 70_000]))
    if kind == 5:
        return json.dumps(rng.choice(["", ".", "..", "../../etc", "\u202e", "{port}", "{{", "}"]))
    return rng.choice(_ODD_SCALARS)


def _not_utf8(rng: random.Random, data: bytes) -> bytes:
    """``data`` with bytes that are not UTF-8 (or a NUL) somewhere in it."""
    position = rng.randrange(len(data) + 1)
    return data[:position] + rng.choice(_NOT_UTF8) + data[position:]


def _seeded_case(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind <= 2:
        text = rng.choice(_PLACES).format(v=_hostile_value(rng))
        if "[[flows]]" not in text:
            text += '[[flows]]\nname = "ok"\ncommand = ["true"]\n'
        data = text.encode("utf-8", "surrogatepass")
        return _not_utf8(rng, data) if rng.random() < 0.15 else data
    if kind == 3:
        return _not_utf8(rng, EXAMPLE)
    if kind == 4:
        many = rng.randint(2, 300)
        return rng.choice(
            [
                *_ODD_DOCUMENTS,
                '[[flows]]\nname = "a"\ncommand = ["true"]\n' * many,
                "[[flows]]\n" * many,
            ]
        ).encode("utf-8")
    data = bytearray(EXAMPLE)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(data))
        hostile = _hostile_value(rng).encode("utf-8", "surrogatepass")
        data[position:position] = rng.choice([hostile, b"[", b"{", b"\n"])
    return bytes(data)


def test_seeded_hostile_run_sets() -> None:
    rng = random.Random(FUZZ_SEED)
    started = time.monotonic()
    for case in range(SEEDED_CASES):
        data = _seeded_case(rng)
        try:
            _check(data)
        except BaseException as exc:  # an escape, a failed check or a crash: say how to replay
            raise AssertionError(
                f"RUNSET_FUZZ_SEED={FUZZ_SEED}, case {case}: {type(exc).__name__}: {exc}; "
                f"input starts {data[:200]!r}"
            ) from exc
    # Hostile input never makes the loader crawl.
    assert time.monotonic() - started < 45, f"RUNSET_FUZZ_SEED={FUZZ_SEED}: too slow"


@pytest.mark.parametrize("depth", [65, 100, 300, 1000, 5000])
@pytest.mark.parametrize(
    "build",
    [
        lambda depth: "[" * depth + "]" * depth,
        lambda depth: "{ a = " * depth + "1" + " }" * depth,
        lambda depth: "[{ a = " * depth + "1" + " }]" * depth,
        lambda depth: "[" * depth,
    ],
    ids=["arrays", "inline-tables", "mixed", "unclosed"],
)
def test_deep_nesting_is_one_line(depth: int, build: Callable[[int], str]) -> None:
    for template in (
        '[[flows]]\nname = "f"\ncommand = ["true"]\nenv = {{ X = {v} }}\n',
        "x = {v}\n",
    ):
        data = template.format(v=build(depth)).encode()
        assert _check(data) is None
        with pytest.raises(RunsetError, match=r"nested more than 64 levels deep|invalid TOML"):
            parse_runset(FAKE_PATH, data, display="fuzz/run-set.toml")


def _special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    directory = tmp_path / "directory.toml"
    directory.mkdir()
    loop = tmp_path / "loop.toml"
    loop.symlink_to(tmp_path / "loop-back.toml")
    (tmp_path / "loop-back.toml").symlink_to(loop)
    to_zero = tmp_path / "zero.toml"
    to_zero.symlink_to("/dev/zero")
    return {
        "fifo": fifo,
        "dev-zero": Path("/dev/zero"),
        "link-to-dev-zero": to_zero,
        "directory": directory,
        "symlink-loop": loop,
        "missing": tmp_path / "missing.toml",
    }


def _one_line_error(load: Callable[[], object], starts: str) -> str:
    started = time.monotonic()
    with pytest.raises(RunsetError) as info:
        load()
    assert time.monotonic() - started < 5, "a special file was read (or waited on)"
    text = str(info.value)
    assert text.startswith(starts), text
    assert "\n" not in text
    return text


def test_special_files_as_run_set_or_spec_file_are_one_line(tmp_path: Path) -> None:
    for name, special in _special_files(tmp_path).items():
        _one_line_error(lambda path=special, shown=name: load_runset(path, shown), f"{name}: ")
        runset = tmp_path / f"uses-{name}.toml"
        runset.write_text(f'[[flows]]\nname = "s"\nspec = {json.dumps(str(special))}\n')
        text = _one_line_error(lambda path=runset: load_runset(path, "r.toml"), "r.toml: ")
        assert f"spec {json.dumps(str(special))[1:-1]!r}" in text or "spec" in text, text


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink-loop", "spec-fifo"])
def test_special_files_end_to_end_give_exit_4_and_one_line(
    pytester: pytest.Pytester, kind: str
) -> None:
    target = pytester.path / "run-set.toml"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "symlink-loop":
        target.symlink_to(pytester.path / "other.toml")
        (pytester.path / "other.toml").symlink_to(target)
    else:
        os.mkfifo(pytester.path / "spec.toml")
        target.write_text('[[flows]]\nname = "s"\nspec = "spec.toml"\n')
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-p", "no:cacheprovider", timeout=60
    )
    assert result.ret == 4
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: run-set.toml: ")]
    assert len(errors) == 1, output

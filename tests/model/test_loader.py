"""The run-set file: ``parse_duration``, ``parse_runset``, ``load_runset`` and their messages.
See DESIGN.md, "The run-set file"."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_runset.model.durations import MAX_DURATION_S, parse_duration
from pytest_runset.model.flows import RunSet, RunsetError
from pytest_runset.model.loader import load_runset, parse_runset
from pytest_runset.model.schema import DEFAULT_KILL_GRACE_S, DEFAULT_TIMEOUT_S

FILE = Path("/project/run-set.toml")


def parse(text: str, *, path: Path = FILE, display: str | None = "run-set.toml") -> RunSet:
    return parse_runset(path, textwrap.dedent(text).encode(), display=display)


def error_of(text: str | bytes, display: str = "run-set.toml") -> str:
    data = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    with pytest.raises(RunsetError) as excinfo:
        parse_runset(FILE, data, display=display)
    message = str(excinfo.value)
    assert len(message.splitlines()) == 1, message
    assert "\n" not in message
    assert "\r" not in message
    assert "Traceback" not in message
    assert message.startswith(display + ": "), message
    return message


def toml_str(text: str) -> str:
    """``text`` as a TOML basic string."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2h15m30s", 8130.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("1d", 86400.0),
        ("15M", 900.0),
        (" 90s ", 90.0),
        ("5 s", 5.0),
        (5, 5.0),
        (2.5, 2.5),
        ("2", 2.0),
        ("0.5", 0.5),
        (0, 0.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "a duration is a number of seconds"),
        (False, "a duration is a number of seconds"),
        (None, "a duration is a number of seconds"),
        ([5], "a duration is a number of seconds"),
        ("", "is not a duration"),
        ("   ", "is not a duration"),
        ("5 minutes", "'5 minutes' is not a duration"),
        ("soon", "'soon' is not a duration"),
        ("5x", "is not a duration"),
        ("s", "is not a duration"),
        ("1.5.2s", "is not a duration"),
        ("-5s", "is not a duration"),
        ("5s and more", "is not a duration"),
        ("nan", "must be finite"),
        ("inf", "must be finite"),
        (float("inf"), "must be finite"),
        (float("nan"), "must be finite"),
        (1e300, "at most 365 days"),
        ("1e10", "at most 365 days"),
        ("366d", "at most 365 days"),
    ],
)
def test_parse_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as excinfo:
        parse_duration(value)
    assert "\n" not in str(excinfo.value)


def test_parse_duration_limit_is_inclusive() -> None:
    assert parse_duration("365d") == MAX_DURATION_S
    assert parse_duration(MAX_DURATION_S) == MAX_DURATION_S


@settings(max_examples=200)
@given(
    hours=st.integers(0, 500),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
)
def test_property_compound_durations(hours: int, minutes: int, seconds: int, millis: int) -> None:
    text = f"{hours}h{minutes}m{seconds}s{millis}ms"
    expected = hours * 3600 + minutes * 60 + seconds + millis / 1000
    assert parse_duration(text) == pytest.approx(expected)
    assert parse_duration(str(expected)) == pytest.approx(expected)


# --- defaults and values ---------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "nightly.toml"
    path.write_text('[[flows]]\nname = "only"\ncommand = ["true"]\n')
    runset = load_runset(path)
    assert runset.name == "nightly"
    assert runset.path == path
    assert runset.directory == tmp_path
    assert runset.settings.concurrency is None
    assert runset.settings.output is None
    assert runset.settings.base_url is None
    assert runset.settings.env == {}
    (flow,) = runset.flows
    assert flow.timeout_s == DEFAULT_TIMEOUT_S == 900.0
    assert flow.kill_grace_s == DEFAULT_KILL_GRACE_S == 5.0
    assert flow.retries == 0
    assert flow.shell is False
    assert flow.cwd is None
    assert flow.env == {}
    assert flow.tags == ()
    assert flow.skip is None
    assert flow.xfail is None
    assert flow.description is None
    assert flow.kind == "command"
    assert flow.index == 0


def test_empty_file_is_an_empty_runset(tmp_path: Path) -> None:
    path = tmp_path / "run-set.toml"
    path.write_bytes(b"")
    runset = load_runset(path)
    assert runset.flows == ()
    assert runset.name == "run-set"


def test_runset_settings() -> None:
    runset = parse(
        """
        [runset]
        name = "checkout-suite"
        concurrency = 4
        timeout = "15m"
        kill_grace = "2s"
        output = "out"
        retries = 1
        base_url = "http://127.0.0.1:8000"
        env = { APP_ENV = "test" }
        """
    )
    assert runset.name == "checkout-suite"
    assert runset.settings.concurrency == 4
    assert runset.settings.timeout == 900.0
    assert runset.settings.kill_grace == 2.0
    assert runset.settings.output == "out"
    assert runset.settings.retries == 1
    assert runset.settings.base_url == "http://127.0.0.1:8000"
    assert runset.settings.env == {"APP_ENV": "test"}


def test_flows_inherit_runset_values() -> None:
    runset = parse(
        """
        [runset]
        timeout = "2m"
        kill_grace = "1s"
        retries = 2

        [[flows]]
        name = "inherits"
        command = ["true"]

        [[flows]]
        name = "own"
        command = ["true"]
        timeout = 5
        kill_grace = 0
        retries = 0
        """
    )
    inherits, own = runset.flows
    assert (inherits.timeout_s, inherits.kill_grace_s, inherits.retries) == (120.0, 1.0, 2)
    assert (own.timeout_s, own.kill_grace_s, own.retries) == (5.0, 0.0, 0)


def test_flow_env_is_the_flows_own() -> None:
    runset = parse(
        """
        [runset]
        env = { A = "runset" }

        [[flows]]
        name = "f"
        command = ["true"]
        env = { B = "flow", C = "{env.HOME}" }
        """
    )
    assert runset.settings.env == {"A": "runset"}
    assert runset.flows[0].env == {"B": "flow", "C": "{env.HOME}"}


def test_commands() -> None:
    runset = parse(
        """
        [[flows]]
        name = "argv"
        command = ["python", "-c", "print(1)", "{slug}"]
        cwd = "sub/{slug}"

        [[flows]]
        name = "shell"
        command = "echo hi | tr a-z A-Z"
        shell = true
        """
    )
    argv, shell = runset.flows
    assert argv.command == ("python", "-c", "print(1)", "{slug}")
    assert argv.shell is False
    assert argv.cwd == "sub/{slug}"
    assert shell.command == "echo hi | tr a-z A-Z"
    assert shell.shell is True


@pytest.mark.parametrize(
    ("line", "skip", "xfail"),
    [
        ('skip = "waiting for sandbox"', "waiting for sandbox", None),
        ("skip = true", "skipped in the run-set", None),
        ("skip = false", None, None),
        ('xfail = "bug #12"', None, "bug #12"),
        ("xfail = true", None, "expected to fail"),
        ("xfail = false", None, None),
    ],
)
def test_skip_and_xfail(line: str, skip: str | None, xfail: str | None) -> None:
    text = f'[[flows]]\nname = "f"\ncommand = ["true"]\n{line}\n'
    (flow,) = parse(text).flows
    assert flow.skip == skip
    assert flow.xfail == xfail


def test_tags_are_deduplicated_in_order() -> None:
    runset = parse(
        """
        [[flows]]
        name = "f"
        command = ["true"]
        tags = ["smoke", "browser", "smoke", "_x1", "browser"]
        """
    )
    assert runset.flows[0].tags == ("smoke", "browser", "_x1")


def test_slugs_are_assigned_with_dedup() -> None:
    text = "".join(
        f'[[flows]]\nname = "{name}"\ncommand = ["true"]\n'
        for name in ("Login", "login", "login-2", "Report Flow", "latest")
    )
    runset = parse(text)
    assert [flow.slug for flow in runset.flows] == [
        "login",
        "login-2",
        "login-2-2",
        "report-flow",
        "latest-2",
    ]
    assert [flow.index for flow in runset.flows] == [0, 1, 2, 3, 4]
    assert [flow.name for flow in runset.flows] == [
        "Login",
        "login",
        "login-2",
        "Report Flow",
        "latest",
    ]


def test_models_are_frozen() -> None:
    runset = parse('[[flows]]\nname = "f"\ncommand = ["true"]\n')
    with pytest.raises(dataclasses.FrozenInstanceError):
        runset.flows[0].timeout_s = 1.0  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        runset.settings.retries = 3


def test_byte_order_mark_is_accepted() -> None:
    data = b'\xef\xbb\xbf[runset]\nname = "bom"\n'
    runset = parse_runset(FILE, data)
    assert runset.name == "bom"
    assert runset.sha256 == hashlib.sha256(data).hexdigest()


# --- checksums -------------------------------------------------------------------------------

FLOW_A = '[[flows]]\nname = "a"\ncommand = ["echo", "a"]\ntimeout = "1m"\n'
FLOW_B = '[[flows]]\nname = "b"\ncommand = ["echo", "b"]\n'
FLOW_C = '[[flows]]\nname = "c"\ncommand = ["echo", "c"]\ntags = ["x"]\n'


def test_file_sha256_is_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "run-set.toml"
    data = (FLOW_A + FLOW_B).encode()
    path.write_bytes(data)
    assert load_runset(path).sha256 == hashlib.sha256(data).hexdigest()
    path.write_bytes(data + b"# a comment\n")
    assert load_runset(path).sha256 == hashlib.sha256(data + b"# a comment\n").hexdigest()


def test_flow_sha256_is_stable_while_other_flows_change() -> None:
    first = parse(FLOW_A + FLOW_B)
    second = parse('[runset]\ntimeout = "3m"\nretries = 2\n' + FLOW_C + FLOW_A)
    sha_a = first.flows[0].sha256
    assert len(sha_a) == 64
    assert int(sha_a, 16) >= 0
    assert second.flows[1].name == "a"
    assert second.flows[1].sha256 == sha_a
    assert first.sha256 != second.sha256
    assert first.flows[1].sha256 != sha_a


def test_flow_sha256_ignores_key_order_and_formatting() -> None:
    reordered = '[[flows]]\ntimeout   = "1m"\ncommand = [ "echo","a" ]\nname = "a"  # hi\n'
    assert parse(reordered).flows[0].sha256 == parse(FLOW_A).flows[0].sha256


@pytest.mark.parametrize(
    "changed",
    [
        FLOW_A.replace('"1m"', '"2m"'),
        FLOW_A.replace('"echo", "a"', '"echo", "A"'),
        FLOW_A.replace('name = "a"', 'name = "a2"'),
        FLOW_A + "retries = 1\n",
    ],
)
def test_flow_sha256_changes_with_the_flow(changed: str) -> None:
    assert parse(changed).flows[0].sha256 != parse(FLOW_A).flows[0].sha256


# --- loading without pytest ------------------------------------------------------------------


def test_loader_does_not_import_pytest(tmp_path: Path) -> None:
    path = tmp_path / "run-set.toml"
    path.write_text(FLOW_A)
    code = (
        "import sys\n"
        "from pytest_runset.model.flows import RunsetError\n"
        "from pytest_runset.model.loader import load_runset\n"
        f"rs = load_runset({str(path)!r})\n"
        "assert rs.flows[0].name == 'a', rs\n"
        "try:\n"
        "    load_runset('does-not-exist.toml')\n"
        "except RunsetError as exc:\n"
        "    print(exc)\n"
        "print('pytest' in sys.modules, '_pytest' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "does-not-exist.toml: no such run-set file",
        "False False",
    ]


# --- messages --------------------------------------------------------------------------------


def test_message_names_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "suites"
    sub.mkdir()
    (sub / "run-set.toml").write_text("[runset]\ntimeout = 0\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunsetError) as excinfo:
        load_runset("suites/run-set.toml")
    assert str(excinfo.value) == (
        "suites/run-set.toml: [runset], field 'timeout': must be greater than 0"
    )
    with pytest.raises(RunsetError) as excinfo:
        load_runset(sub / "run-set.toml", display="shown.toml")
    assert str(excinfo.value).startswith("shown.toml: [runset], field 'timeout'")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(RunsetError) as excinfo:
        load_runset(tmp_path / "nope.toml")
    assert str(excinfo.value) == f"{tmp_path / 'nope.toml'}: no such run-set file"
    with pytest.raises(RunsetError) as excinfo:
        load_runset(tmp_path)
    assert str(excinfo.value) == f"{tmp_path}: is a directory, not a run-set file"


def test_message_names_flow_by_position_and_name() -> None:
    message = error_of(
        FLOW_A + FLOW_B + '[[flows]]\nname = "third"\ncommand = ["x"]\nretries = -1\n'
    )
    assert message == (
        "run-set.toml: flow #3 'third', field 'retries': must be greater than or equal to 0"
    )


def test_exact_messages() -> None:
    assert error_of('[[flows]]\nname = "a"\ncomand = ["x"]\n') == (
        "run-set.toml: flow #1 'a', field 'comand': unknown key (typo?)"
    )
    assert error_of('[runset]\nconcurrency = "4"\n') == (
        "run-set.toml: [runset], field 'concurrency': must be an integer, not a string"
    )
    assert error_of('[[flows]]\ncommand = ["x"]\n') == (
        "run-set.toml: flow #1, field 'name': required key is missing"
    )


BAD = [
    ("[runset\n", ["invalid TOML", "line 1, column 8"]),
    ('name = "a"\nname = "b"\n', ["invalid TOML", "line 2"]),
    ("foo = 1\n", ["field 'foo'", "unknown key"]),
    ("[runset]\nfoo = 1\n", ["[runset], field 'foo'", "unknown key"]),
    ("[runset]\ntimeout = true\n", ["[runset], field 'timeout'", "a duration is"]),
    ("[runset]\ntimeout = 0\n", ["[runset], field 'timeout'", "must be greater than 0"]),
    ("[runset]\ntimeout = -1\n", ["[runset], field 'timeout'", "must be greater than 0"]),
    ('[runset]\ntimeout = "0s"\n', ["[runset], field 'timeout'", "must be greater than 0"]),
    ("[runset]\ntimeout = inf\n", ["[runset], field 'timeout'", "must be finite"]),
    ("[runset]\ntimeout = 1e300\n", ["[runset], field 'timeout'", "at most 365 days"]),
    ("[runset]\nkill_grace = -1\n", ["[runset], field 'kill_grace'", "must not be negative"]),
    ("[runset]\nconcurrency = 0\n", ["field 'concurrency'", "must be greater than 0"]),
    ("[runset]\nconcurrency = true\n", ["field 'concurrency'", "an integer, not a boolean"]),
    ("[runset]\nretries = 1.5\n", ["field 'retries'", "must be an integer, not a float"]),
    ("[runset]\nretries = -1\n", ["field 'retries'", "greater than or equal to 0"]),
    ('[runset]\nname = ""\n', ["[runset], field 'name'", "must not be empty"]),
    ('[runset]\nname = " \t"\n', ["[runset], field 'name'", "must not be empty"]),
    ("[runset]\nname = 3\n", ["[runset], field 'name'", "must be a string, not an integer"]),
    ("[runset]\nenv = { A = 1 }\n", ["[runset], field 'env.A'", "must be a string"]),
    ('[runset]\nenv = { A = "{nope}" }\n', ["[runset], field 'env.A'", "unknown placeholder"]),
    ('[runset]\nbase_url = "http://x:{port}"\n', ["field 'base_url'", "lease ports"]),
    ("runset = 3\n", ["[runset]", "must be a table, not an integer"]),
    ('[[runset]]\nname = "a"\n', ["[runset]", "must be a table, not an array"]),
    ("flows = 3\n", ["field 'flows'", "must be an array, not an integer"]),
    ("flows = [1]\n", ["flow #1", "must be a table, not an integer"]),
    ('[flows]\nname = "a"\n', ["field 'flows'", "must be an array, not a table"]),
    ('[[flows]]\nname = ""\ncommand = ["x"]\n', ["flow #1 '', field 'name'", "must not be empty"]),
    ('[[flows]]\nname = "  "\ncommand = ["x"]\n', ["flow #1 '  ', field 'name'", "not be empty"]),
    ('[[flows]]\nname = 7\ncommand = ["x"]\n', ["flow #1, field 'name'", "must be a string"]),
    ('[[flows]]\nname = "a"\n', ["flow #1 'a'", "no kind"]),
    ('[[flows]]\nname = "a"\ncommand = "ls"\n', ["field 'command'", "needs shell = true"]),
    ('[[flows]]\nname = "a"\ncommand = ["ls"]\nshell = true\n', ["field 'shell'", "one string"]),
    ('[[flows]]\nname = "a"\ncommand = " "\nshell = true\n', ["'command'", "must not be empty"]),
    ('[[flows]]\nname = "a"\ncommand = []\n', ["field 'command'", "must not be an empty list"]),
    ('[[flows]]\nname = "a"\ncommand = 3\n', ["field 'command'", "an array or a string"]),
    ('[[flows]]\nname = "a"\ncommand = ["a", 1]\n', ["field 'command[1]'", "must be a string"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\nshell = "yes"\n', ["'shell'", "a boolean"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\nskip = 3\n', ["'skip'", "a string or a boolean"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\ntags = "s"\n', ["'tags'", "must be an array"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\ntags = ["skip"]\n', ["'tags'", "'skip' is reserved"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\ntags = ["xfail"]\n', ["'tags'", "reserved"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\ntags = ["a-b"]\n', ["'tags'", "'a-b' is not usable"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\ntags = ["1a"]\n', ["'tags'", "not usable"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\nenv = { A = 1 }\n', ["'env.A'", "a string"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\nenv = { str = 1 }\n', ["'env.str'", "a string"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\nint = 1\n', ["field 'int'", "unknown key"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\ntimeout = "5 minutes"\n', ["'timeout'", "not a"]),
    ('[[flows]]\nname = "a"\ncommand = ["{nope}"]\n', ["'command[0]'", "unknown placeholder"]),
    ('[[flows]]\nname = "a"\ncommand = ["{port}"]\n', ["'command[0]'", "lease ports"]),
    ('[[flows]]\nname = "a"\ncommand = ["{slug"]\n', ["'command[0]'", "unclosed '{'"]),
    ('[[flows]]\nname = "a"\ncommand = "{0}"\nshell = true\n', ["'command'", "unknown"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\ncwd = "{x}"\n', ["'cwd'", "unknown placeholder"]),
    ('[[flows]]\nname = "a"\ncommand = ["x"]\nenv = {A="}"}\n', ["'env.A'", "single '}'"]),
]


@pytest.mark.parametrize(("text", "fragments"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_documents(text: str, fragments: list[str]) -> None:
    message = error_of(text)
    for fragment in fragments:
        assert fragment in message, message


def test_first_problem_is_reported_and_others_counted() -> None:
    message = error_of('[[flows]]\nname = "a"\ncommand = ["x"]\ntimeout = 0\nretries = -1\n')
    assert message.endswith("must be greater than 0 (and 1 more problem)")
    message = error_of('[[flows]]\nname = "a"\ncommand = 1\ntimeout = 0\nretries = -1\nx = 1\n')
    assert "(and 3 more problems)" in message


def test_not_utf8_names_line_and_column() -> None:
    message = error_of(b'[runset]\nname = "x"\n\n# caf\xe9\n')
    assert message == ("run-set.toml: not valid UTF-8: byte 0xe9 at line 4, column 6 (offset 26)")


def test_messages_stay_one_line_whatever_the_input() -> None:
    for text in (
        '[[flows]]\nname = "a"\ncommand = ["x"]\n"x\\ny" = 1\n',
        '"x\\ny" = 1\n',
        '[[flows]]\nname = "a\\nb"\ncommand = ["{x\\ny}"]\n',
        '[[flows]]\nname = "a\\u2028b"\ncommand = []\n',
        '[[flows]]\nname = "a"\ncommand = ["x"]\nenv = { "A\\rB" = 1 }\n',
        'a = "x\n',
    ):
        error_of(text)
    assert "field 'x\\ny'" in error_of('"x\\ny" = 1\n')
    with pytest.raises(RunsetError) as excinfo:
        load_runset("dir\nname/run-set.toml")
    assert str(excinfo.value) == "dir\\nname/run-set.toml: no such run-set file"


def test_long_flow_names_are_shortened_in_messages() -> None:
    name = "n" * 10_000
    message = error_of(f'[[flows]]\nname = "{name}"\ncommand = []\n')
    assert len(message) < 200
    assert "flow #1 'nnnn" in message
    assert "...'" in message


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=100).filter(str.strip), index=st.integers(0, 3))
def test_property_any_flow_name_gives_one_line_message(name: str, index: int) -> None:
    good = '[[flows]]\nname = "ok"\ncommand = ["x"]\n' * index
    text = good + f"[[flows]]\nname = {toml_str(name)}\ncommand = []\n"
    message = error_of(text.encode())
    assert f"flow #{index + 1} " in message
    assert "field 'command': must not be an empty list" in message


@settings(max_examples=150, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=30).filter(str.strip), max_size=8))
def test_property_valid_names_load_with_unique_slugs(names: list[str]) -> None:
    text = "".join(f'[[flows]]\nname = {toml_str(n)}\ncommand = ["x"]\n' for n in names)
    runset = parse_runset(FILE, text.encode())
    assert [flow.name for flow in runset.flows] == names
    assert len({flow.slug for flow in runset.flows}) == len(names)

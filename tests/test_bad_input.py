"""Every bad run-set file named with ``--runset`` or bad option ends the session with exit code 4
(usage error) and a one-line message naming the file, the flow or field, and the problem; never a
traceback. A bad run-set that pytest collects by itself is that file's collection error instead.

These run pytest in a subprocess (``pytester.runpytest_subprocess``), as a user would.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

import pytest

GOOD = '[[flows]]\nname = "ok"\ncommand = ["true"]\n'
# By its distribution: tests/ is on sys.path, so find_spec("xdist") would find tests/xdist/.
XDIST = any(d.metadata["Name"] == "pytest-xdist" for d in importlib.metadata.distributions())
# -n belongs to pytest-xdist when it is installed; the plugin's own worker option is always there.
N_OPTION = "--runset-workers" if XDIST else "-n"


def flow(body: str, name: str = "f") -> str:
    return f'[[flows]]\nname = "{name}"\n{body}\n'


def assert_usage_error(result: pytest.RunResult, fragments: list[str]) -> str:
    """Exit 4, no traceback, and one output line that holds every fragment; returns that line."""
    output = result.stdout.lines + result.stderr.lines
    text = "\n".join(output)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "Traceback" not in text
    assert "INTERNALERROR" not in text
    lines = [line for line in output if all(fragment in line for fragment in fragments)]
    assert lines, f"no single line holds all of {fragments!r}:\n{text}"
    return lines[0]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")


def assert_collection_error(result: pytest.RunResult, path: str, fragments: list[str]) -> str:
    """A run-set pytest collected by itself (not named with --runset) that fails to load is that
    file's collection error, as a Python file with a syntax error is: exit 2, no traceback, and
    one line under ``ERROR collecting <path>`` that holds every fragment; returns that line."""
    output = result.stdout.lines + result.stderr.lines
    text = "\n".join(output)
    assert result.ret == pytest.ExitCode.INTERRUPTED, text
    assert "Traceback" not in text
    assert "INTERNALERROR" not in text
    header = next(i for i, line in enumerate(output) if f"ERROR collecting {path} " in line)
    message = output[header + 1]
    assert all(fragment in message for fragment in fragments), text
    assert "Interrupted: 1 error during collection" in text
    return message


FILE_CASES = [
    pytest.param(
        '[runset]\nname = "x"\n[[flows]\n',
        ["invalid TOML", "line 3, column 8"],
        id="toml-syntax",
    ),
    pytest.param(
        '[runset]\nname = "x"\nname = "y"\n',
        ["invalid TOML", "line 3, column"],
        id="toml-duplicate-key",
    ),
    pytest.param(
        b'[[flows]]\nname = "caf\xe9"\ncommand = ["true"]\n',
        ["not valid UTF-8", "byte 0xe9", "line 2, column 12"],
        id="not-utf8",
    ),
    pytest.param("flows_ = []\n", ["field 'flows_'", "unknown key"], id="unknown-top-level-key"),
    pytest.param(
        "[runset]\nconcurency = 2\n",
        ["[runset], field 'concurency'", "unknown key"],
        id="unknown-runset-key",
    ),
    pytest.param(
        flow('comand = ["true"]', "login"),
        ["flow #1 'login', field 'comand'", "unknown key (typo?)"],
        id="unknown-flow-key",
    ),
    pytest.param(
        "[runset]\ntimeout = true\n",
        ["[runset], field 'timeout'", "a duration is a number of seconds"],
        id="timeout-bool",
    ),
    pytest.param(
        '[runset]\nconcurrency = "4"\n',
        ["[runset], field 'concurrency'", "must be an integer, not a string"],
        id="concurrency-string",
    ),
    pytest.param(
        flow('command = ["true"]\nenv = { LEVEL = 3 }'),
        ["flow #1 'f', field 'env.LEVEL'", "must be a string, not an integer"],
        id="env-value-int",
    ),
    pytest.param(
        flow('command = ["true"]\ntags = "smoke"'),
        ["flow #1 'f', field 'tags'", "must be an array, not a string"],
        id="tags-not-list",
    ),
    pytest.param(
        flow('command = ["true"]\ntimeout = 0'),
        ["flow #1 'f', field 'timeout'", "must be greater than 0"],
        id="timeout-zero",
    ),
    pytest.param(
        flow('command = ["true"]\ntimeout = -1'),
        ["flow #1 'f', field 'timeout'", "must be greater than 0"],
        id="timeout-negative",
    ),
    pytest.param(
        '[runset]\ntimeout = "0s"\n',
        ["[runset], field 'timeout'", "must be greater than 0"],
        id="timeout-zero-string",
    ),
    pytest.param(
        flow('command = ["true"]\ntimeout = "5 minutes"'),
        ["flow #1 'f', field 'timeout'", "'5 minutes' is not a duration"],
        id="timeout-bad-string",
    ),
    pytest.param(
        flow('command = ["true"]\ntimeout = 1e12'),
        ["flow #1 'f', field 'timeout'", "at most 365 days"],
        id="timeout-huge",
    ),
    pytest.param(
        "[runset]\nconcurrency = 0\n",
        ["[runset], field 'concurrency'", "must be greater than 0"],
        id="concurrency-zero",
    ),
    pytest.param(
        flow('command = ["true"]\nretries = -1'),
        ["flow #1 'f', field 'retries'", "must be greater than or equal to 0"],
        id="retries-negative",
    ),
    pytest.param(
        GOOD + '[[flows]]\nname = ""\ncommand = ["true"]\n',
        ["flow #2 '', field 'name'", "must not be empty"],
        id="empty-name",
    ),
    pytest.param(
        '[[flows]]\nname = "   "\ncommand = ["true"]\n',
        ["flow #1 '   ', field 'name'", "must not be empty"],
        id="blank-name",
    ),
    pytest.param(
        '[[flows]]\ncommand = ["true"]\n',
        ["flow #1, field 'name'", "required key is missing"],
        id="missing-name",
    ),
    pytest.param(
        GOOD + GOOD.replace("ok", "nothing").replace('command = ["true"]\n', 'tags = ["a"]\n'),
        ["flow #2 'nothing'", "no kind"],
        id="no-kind",
    ),
    pytest.param(
        flow('command = "echo hi"'),
        ["flow #1 'f', field 'command'", "a string command needs shell = true"],
        id="string-command-without-shell",
    ),
    pytest.param(
        flow('command = ["echo", "hi"]\nshell = true'),
        ["flow #1 'f', field 'shell'", "needs the command as one string"],
        id="shell-with-list",
    ),
    pytest.param(
        flow("command = []"),
        ["flow #1 'f', field 'command'", "must not be an empty list"],
        id="empty-argv",
    ),
    pytest.param(
        flow('command = ["echo", 3]'),
        ["flow #1 'f', field 'command[1]'", "must be a string, not an integer"],
        id="argv-item-int",
    ),
    pytest.param(
        flow('command = ["echo", "{nope}"]', "api"),
        ["flow #1 'api', field 'command[1]'", "unknown placeholder {nope}"],
        id="unknown-placeholder",
    ),
    pytest.param(
        flow('command = ["echo", "{name.__class__}"]'),
        ["flow #1 'f', field 'command[1]'", "unknown placeholder {name.__class__}"],
        id="attribute-placeholder",
    ),
    pytest.param(
        flow('command = ["serve", "--port", "{port}"]'),
        ["flow #1 'f', field 'command[2]'", "{port} is only known to flows that lease ports"],
        id="port-without-ports",
    ),
    pytest.param(
        flow('command = ["echo", "{slug"]'),
        ["flow #1 'f', field 'command[1]'", "unclosed '{'"],
        id="unbalanced-brace",
    ),
    pytest.param(
        flow('command = ["true"]\nenv = { A = "x}" }'),
        ["flow #1 'f', field 'env.A'", "single '}'"],
        id="stray-closing-brace",
    ),
    pytest.param(
        '[runset]\nbase_url = "http://127.0.0.1:{prot}"\n',
        ["[runset], field 'base_url'", "unknown placeholder {prot}"],
        id="base-url-placeholder",
    ),
    pytest.param(
        flow('command = ["true"]\ntags = ["smoke", "skip"]'),
        ["flow #1 'f', field 'tags'", "tag 'skip' is reserved"],
        id="reserved-tag",
    ),
    pytest.param(
        flow('command = ["true"]\ntags = ["smoke-test"]'),
        ["flow #1 'f', field 'tags'", "tag 'smoke-test' is not usable as a pytest marker"],
        id="tag-with-dash",
    ),
    pytest.param(
        flow('command = ["true"]\nskip = 1'),
        ["flow #1 'f', field 'skip'", "must be a string or a boolean"],
        id="skip-int",
    ),
    pytest.param(
        "flows = [1]\n",
        ["flow #1", "must be a table, not an integer"],
        id="flow-not-table",
    ),
    pytest.param(
        '[[flows]]\nname = "a\\nb"\ncommand = []\n',
        ["flow #1 'a\\nb', field 'command'", "must not be an empty list"],
        id="newline-in-name",
    ),
]


@pytest.mark.parametrize(("content", "fragments"), FILE_CASES)
def test_bad_runset_file(
    pytester: pytest.Pytester, content: str | bytes, fragments: list[str]
) -> None:
    path = pytester.path.joinpath("run-set.toml")
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    result = run(pytester, "--runset", "run-set.toml")
    line = assert_usage_error(result, ["run-set.toml: ", *fragments])
    assert line.startswith("ERROR: run-set.toml: ")


def test_enough_distinct_bad_files() -> None:
    contents = [param.values[0] for param in FILE_CASES]
    assert len(set(contents)) == len(contents) >= 20


def test_missing_file(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--runset", "missing.toml")
    assert_usage_error(result, ["missing.toml", "no such run-set file"])


def test_directory_as_runset(pytester: pytest.Pytester) -> None:
    pytester.mkdir("suites")
    result = run(pytester, "--runset", "suites")
    assert_usage_error(result, ["suites", "is a directory, not a run-set file"])


OPTION_CASES = [
    pytest.param(["--runset-workers", "0"], ["--runset-workers", "must be at least 1"], id="w0"),
    pytest.param(
        ["--runset-workers", "abc"],
        ["--runset-workers 'abc'", "expected a positive number or 'auto'"],
        id="workers-abc",
    ),
    pytest.param([N_OPTION, "-1"], [N_OPTION, "'-1'", "must be at least 1"], id="n-negative"),
    pytest.param(["--runset-timeout", "0"], ["--runset-timeout '0'", "greater than 0"], id="t0"),
    pytest.param(
        ["--runset-timeout", "soon"],
        ["--runset-timeout 'soon'", "'soon' is not a duration"],
        id="timeout-soon",
    ),
    pytest.param(
        ["--runset-timeout", "inf"], ["--runset-timeout 'inf'", "must be finite"], id="t-inf"
    ),
    pytest.param(
        ["--runset-run-id", "../evil"],
        ["--runset-run-id '../evil'", "use letters, digits"],
        id="run-id-traversal",
    ),
    pytest.param(
        ["--runset-retries", "-1"], ["--runset-retries", "must not be negative"], id="retries-neg"
    ),
    pytest.param(
        ["--runset-retries", "x"], ["--runset-retries", "invalid int value: 'x'"], id="retries-x"
    ),
]


@pytest.mark.parametrize(("options", "fragments"), OPTION_CASES)
def test_bad_option(pytester: pytest.Pytester, options: list[str], fragments: list[str]) -> None:
    pytester.path.joinpath("run-set.toml").write_text(GOOD, encoding="utf-8")
    result = run(pytester, "--runset", "run-set.toml", *options)
    assert_usage_error(result, fragments)


def test_bad_file_given_as_positional_path(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("run-set.toml").write_text(
        flow('command = "echo hi"', "shell-less"), encoding="utf-8"
    )
    result = run(pytester, "run-set.toml")
    assert_collection_error(
        result,
        "run-set.toml",
        ["run-set.toml: flow #1 'shell-less', field 'command'", "needs shell = true"],
    )


def test_bad_file_in_subdirectory_found_by_pattern(pytester: pytest.Pytester) -> None:
    suites = pytester.mkdir("suites")
    suites.joinpath("smoke.runset.toml").write_text("[runset]\ntimeout = 0\n", encoding="utf-8")
    result = run(pytester, "suites")
    assert_collection_error(
        result,
        "suites/smoke.runset.toml",
        ["suites/smoke.runset.toml: [runset], field 'timeout'", "must be greater than 0"],
    )


def test_bad_file_found_by_recursion_from_rootdir(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("run-set.toml").write_text(
        flow('command = ["true"]\ntags = ["xfail"]'), encoding="utf-8"
    )
    result = run(pytester)
    assert_collection_error(
        result, "run-set.toml", ["run-set.toml: flow #1 'f', field 'tags'", "'xfail' is reserved"]
    )


def test_good_file_is_not_a_usage_error(pytester: pytest.Pytester) -> None:
    # The control case: the same invocation with a valid file collects its flows.
    pytester.path.joinpath("run-set.toml").write_text(
        GOOD + flow('command = "echo hi"\nshell = true', "second"), encoding="utf-8"
    )
    result = run(pytester, "--runset", "run-set.toml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["run-set.toml::ok", "run-set.toml::second"])


# --- files that are not what they claim to be --------------------------------------------------


def test_a_device_as_run_set_is_refused_without_reading_it(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--runset", "/dev/zero")
    assert_usage_error(result, ["/dev/zero: cannot read: not a regular file (a device)"])


def test_a_fifo_as_run_set_is_refused_without_blocking(pytester: pytest.Pytester) -> None:
    os.mkfifo(pytester.path / "run-set.toml")
    result = run(pytester, "--runset", "run-set.toml")
    assert_usage_error(result, ["run-set.toml: cannot read: not a regular file (a FIFO)"])


def test_a_fifo_as_spec_file_is_refused_without_blocking(pytester: pytest.Pytester) -> None:
    (pytester.path / "flows").mkdir()
    os.mkfifo(pytester.path / "flows" / "pay.toml")
    pytester.makefile(".toml", **{"run-set": flow('spec = "flows/pay.toml"', "pay")})
    result = run(pytester, "--runset", "run-set.toml")
    assert_usage_error(result, ["flows/pay.toml", "not a regular file (a FIFO)"])


@pytest.mark.parametrize("depth", [100, 400, 5000])
def test_deeply_nested_values_are_one_line(pytester: pytest.Pytester, depth: int) -> None:
    pytester.makefile(
        ".toml",
        **{
            "run-set": flow('command = ["true"]')
            + "env = { a = "
            + "[" * depth
            + "]" * depth
            + " }\n"
        },
    )
    result = run(pytester, "--runset", "run-set.toml")
    assert_usage_error(result, ["run-set.toml", "nested more than 64 levels deep"])


def test_an_integer_of_thousands_of_digits_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", **{"run-set": "[runset]\nconcurrency = " + "9" * 5000 + "\n" + GOOD})
    result = run(pytester, "--runset", "run-set.toml")
    assert_usage_error(result, ["run-set.toml: invalid TOML", "digits"])


def test_validate_prints_one_line_for_deep_nesting(pytester: pytest.Pytester) -> None:
    path = pytester.makefile(".toml", **{"run-set": "x = " + "[" * 2000 + "]" * 2000 + "\n"})
    result = pytester.run(sys.executable, "-m", "pytest_runset.cli", "validate", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.outlines + result.errlines if line.strip()]
    assert len(lines) == 1, lines
    assert "nested more than 64 levels deep" in lines[0]


SECRET_PERSONA = '[personas.alice]\nusername = "alice"\npassword_env = "ALICE_PASSWORD"\n'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param('command = ["login", "{persona.password}"]', "command", id="argv"),
        pytest.param(
            'shell = true\ncommand = "login --pw={persona.password}"', "command", id="shell-string"
        ),
        pytest.param(
            'command = ["true"]\nsidecar = { command = ["proxy", "{persona.password}"] }',
            "sidecar.command",
            id="sidecar",
        ),
    ],
)
def test_a_secret_in_a_commands_arguments_is_refused(
    pytester: pytest.Pytester, body: str, field: str
) -> None:
    pytester.makefile(".toml", **{"run-set": SECRET_PERSONA + flow(f'persona = "alice"\n{body}')})
    assert_usage_error(
        run(pytester, "--runset", "run-set.toml"),
        [
            f"run-set.toml: flow #1 'f', field '{field}': {{persona.password}} is a secret",
            "$RUNSET_PERSONA_PASSWORD",
            "allow_secret_argv = true",
        ],
    )


def test_plain_persona_fields_and_allowed_secrets_in_arguments_load(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".toml",
        **{
            "run-set": SECRET_PERSONA
            + flow('persona = "alice"\ncommand = ["echo", "{persona.username}"]', "plain")
            + flow(
                'persona = "alice"\nallow_secret_argv = true\n'
                'command = ["echo", "{persona.password}"]',
                "allowed",
            )
        },
    )
    result = run(pytester, "--runset", "run-set.toml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["run-set.toml::plain", "run-set.toml::allowed"])

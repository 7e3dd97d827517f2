"""The ``pytest-runset`` console script: validate, list, show.

Most cases call :func:`pytest_runset.cli.main` in-process; a few run the installed console script
and ``python -m pytest_runset.cli`` as real subprocesses, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.cli import main

RUNSET = """
[runset]
name = "demo"

[personas.alice]
username = "alice"

[[flows]]
name = "Smoke Check"
command = ["true"]
tags = ["smoke", "fast"]
timeout = "30s"

[[flows]]
name = "retried"
command = ["false"]
retries = 2
persona = "alice"

[[flows]]
name = "later"
command = ["true"]
skip = "waiting for sandbox"
"""

# A real run: one passing, one failing (with a message on stderr), one skipped flow.
RUN = f"""
[runset]
name = "cli-run"
concurrency = 2

[[flows]]
name = "good"
command = [{sys.executable!r}, "-c", "print('hi')"]
tags = ["smoke"]

[[flows]]
name = "bad"
command = [{sys.executable!r}, "-c", "import sys; sys.exit('boom')"]

[[flows]]
name = "skipped one"
command = ["true"]
skip = "not today"
"""

BAD_TIMEOUT = '[[flows]]\nname = "login"\ncommand = ["true"]\ntimeout = "soon"\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def report(status: str = "passed", flows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A minimal, hand-written report.json."""
    entries = flows if flows is not None else [{"name": "a", "status": "passed", "attempts": 1}]
    return {
        "schema": "pytest-runset/report@1",
        "run_id": "hand",
        "runset": {"name": "manual"},
        "status": status,
        "wall_s": 2.0,
        "workers": 2,
        "flows": entries,
        "summary": {"total": len(entries), "passed": len(entries), "parallelism_efficiency": 0.5},
    }


def assert_usage_error(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err


@pytest.fixture
def runset_file(tmp_path: Path) -> Path:
    return write(tmp_path / "run-set.toml", RUNSET)


@pytest.fixture
def run_dir(pytester: pytest.Pytester) -> Path:
    """A real run (id ``r1``) made by pytest in a subprocess; its run directory."""
    write(pytester.path / "run-set.toml", RUN)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "r1", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    path = pytester.path / "runset-results" / "r1"
    assert (path / "report.json").is_file()
    return path


# --- validate --------------------------------------------------------------------------------


def test_validate_ok(runset_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(runset_file)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{runset_file}: ok (3 flows)\n"
    assert err == ""


def test_validate_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.toml", BAD_TIMEOUT)
    assert main(["validate", str(bad)]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert_usage_error(err, str(bad), "flow #1 'login', field 'timeout'", "not a duration")


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["validate", str(missing)]) == 4
    assert_usage_error(capsys.readouterr().err, str(missing), "no such run-set file")


def test_validate_checks_every_file(
    runset_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path / "bad.toml", BAD_TIMEOUT)
    assert main(["validate", str(bad), str(runset_file)]) == 4
    out, err = capsys.readouterr()
    assert out == f"{runset_file}: ok (3 flows)\n"
    assert_usage_error(err, str(bad), "field 'timeout'")


def test_validate_says_what_pytest_says(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(pytester.path / "run-set.toml", BAD_TIMEOUT)
    assert main(["validate", str(bad)]) == 4
    line = capsys.readouterr().err.strip()
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # pytest names the file as given on its command line, validate as given on its own.
    assert f"ERROR: {line.replace(str(bad), 'run-set.toml')}" in result.stderr.lines


# --- list ------------------------------------------------------------------------------------


def test_list_table(runset_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", str(runset_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "SLUG", "NAME", "KIND", "TIMEOUT_S", "RETRIES", "TAGS", "PERSONA", "SKIP/XFAIL"
    ]  # fmt: skip
    smoke, retried, later = lines[1:]
    assert smoke.startswith("smoke-check  Smoke Check  command")
    assert smoke.split()[-5:] == ["30", "0", "smoke,fast", "-", "-"]
    assert retried.split()[-5:] == ["900", "2", "-", "alice", "-"]
    assert later.startswith("later")
    assert later.endswith("skip: waiting for sandbox")


def test_list_json(runset_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json", str(runset_file)]) == 0
    flows = json.loads(capsys.readouterr().out)
    assert [flow["slug"] for flow in flows] == ["smoke-check", "retried", "later"]
    assert flows[0]["tags"] == ["smoke", "fast"]
    assert flows[0]["timeout_s"] == 30.0
    assert flows[0]["command"] == ["true"]
    assert flows[1]["retries"] == 2
    assert flows[0]["persona"] is None
    assert flows[1]["persona"] == "alice"
    assert flows[2]["skip"] == "waiting for sandbox"


def test_list_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.toml", BAD_TIMEOUT)
    assert main(["list", str(bad)]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert_usage_error(err, str(bad), "field 'timeout'")


# --- show ------------------------------------------------------------------------------------


def check_show_output(out: str) -> None:
    lines = out.splitlines()
    assert lines[0] == "run-set cli-run, run r1: failed"
    assert "on 2 workers" in lines[1]
    assert "efficiency " in lines[1]
    table = [line for line in lines if line.startswith(("passed", "failed", "skipped"))]
    assert [line.split()[0] for line in table] == ["passed", "failed", "skipped"]  # file order
    assert "good" in table[0]
    assert "boom" in table[1]
    assert "skipped one" in table[2]
    assert "not today" in table[2]
    assert lines[-1] == "1 passed, 1 failed, 1 skipped (3 flows)"
    # The run measured its flows and says how it contained them (cgroup where this host
    # allows it, else process-group).
    assert lines[2] in ("containment cgroup", "containment process-group")
    header = next(line for line in lines if line.startswith("STATUS"))
    assert header.split()[:5] == ["STATUS", "DURATION", "CPU", "PEAK", "MEM"]
    assert table[0].split()[2].endswith("s")  # the passing flow's CPU seconds
    assert table[2].split()[1:4] == ["-", "-", "-"]  # the skipped flow never ran


def test_show_run_dir_report_and_latest(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["show", str(run_dir)]) == 1  # the run failed
    out = capsys.readouterr().out
    check_show_output(out)
    assert f"html: {run_dir / 'report.html'}" in out.splitlines()

    assert main(["show", str(run_dir / "report.json")]) == 1
    check_show_output(capsys.readouterr().out)

    # ``latest`` resolves in ./runset-results (pytester's directory is the cwd) ...
    assert main(["show", "latest"]) == 1
    check_show_output(capsys.readouterr().out)

    # ... or in --output from anywhere; a bare run id works there too.
    monkeypatch.chdir(tmp_path)
    output = str(run_dir.parent)
    assert main(["show", "latest", "--output", output]) == 1
    check_show_output(capsys.readouterr().out)
    assert main(["show", "r1", "--output", output]) == 1
    check_show_output(capsys.readouterr().out)


def test_show_passed_run_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "report.json", json.dumps(report("passed")))
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "run-set manual, run hand: passed"
    assert "wall 2.00s on 2 workers, efficiency 50%" in out


def test_show_prints_usage_and_how_the_run_was_contained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = [
        {"name": "big", "status": "passed", "attempts": 1, "duration_s": 2.0,
         "resources": {"cpu_s": 0.514, "peak_memory_bytes": 200 * 2**20}},
        {"name": "huge", "status": "passed", "attempts": 1, "duration_s": 1.0,
         "resources": {"cpu_s": 12.0, "peak_memory_bytes": 3 * 2**29}},
        {"name": "unmeasured peak", "status": "failed", "attempts": 1, "duration_s": 1.0,
         "resources": {"cpu_s": 0.0, "peak_memory_bytes": None}},
        {"name": "never ran", "status": "not_run", "attempts": 0,
         "resources": {"cpu_s": 0.0, "peak_memory_bytes": None}},
        {"name": "older release", "status": "passed", "attempts": 1, "duration_s": 1.0},
        {"name": "hostile", "status": "passed", "attempts": 1, "duration_s": 1.0,
         "resources": {"cpu_s": 10**400, "peak_memory_bytes": "lots"}},
    ]  # fmt: skip
    data = {**report("failed", flows), "containment": "process-group"}
    data.update(limits_enforced=False, paused_s=7.2)
    path = write(tmp_path / "report.json", json.dumps(data))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["show", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "containment process-group, limits not enforced, paused 7s"
    cells = {
        line.split()[0] + " " + name: line.split()[2:4]
        for line in lines
        for name in ("big", "huge", "unmeasured peak", "never ran", "older release", "hostile")
        if line.rstrip().endswith(name)
    }
    assert cells == {
        "passed big": ["0.51s", "200M"],
        "passed huge": ["12.00s", "1.5G"],
        "failed unmeasured peak": ["0.00s", "-"],
        "not_run never ran": ["-", "-"],
        "passed older release": ["-", "-"],
        "passed hostile": ["-", "-"],
    }

    # A report of an older release has no containment line at all; a run that was contained
    # in cgroups, enforced its limits and was never paused says just the tier.
    for extra, expected in (({}, None), ({"containment": "cgroup"}, "containment cgroup")):
        write(tmp_path / "report.json", json.dumps({**report("passed"), **extra}))
        assert main(["show", str(path)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line for line in lines if line.startswith("containment")] == (
            [expected] if expected else []
        )


def test_show_latest_as_plain_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # On filesystems without symlinks ``latest`` is a file that holds the run id.
    (tmp_path / "run7").mkdir()
    write(tmp_path / "run7" / "report.json", json.dumps(report("incomplete")))
    write(tmp_path / "latest", "run7\n")
    assert main(["show", "latest", "--output", str(tmp_path)]) == 1
    assert "run hand: incomplete" in capsys.readouterr().out


def test_show_truncates_messages_to_terminal_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = [
        {"name": "long", "status": "failed", "attempts": 1, "message": "x" * 500 + "\nsecond"},
        {"name": "flaky one", "status": "passed", "attempts": 2, "flaky": True, "worker": "gw1"},
    ]
    path = write(tmp_path / "report.json", json.dumps(report("failed", flows)))
    monkeypatch.setenv("COLUMNS", "90")
    assert main(["show", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("") + 1 :]  # the header's report path is never cut
    assert all(len(line) <= 90 for line in table), table
    failed = next(line for line in lines if line.startswith("failed"))
    assert failed.endswith("xxx...")
    assert "flaky one" in next(line for line in lines if " flaky " in line)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        pytest.param("{not json", ["invalid JSON", "line 1 column 2"], id="malformed"),
        pytest.param(
            '{"schema": "other/report@9", "flows": []}',
            ["not a pytest-runset report", "'other/report@9'"],
            id="wrong-schema",
        ),
        pytest.param('{"flows": []}', ["no 'schema' field"], id="no-schema"),
        pytest.param("[1, 2]", ["not a JSON object"], id="not-an-object"),
        pytest.param(
            '{"schema": "pytest-runset/report@1", "flows": {}}',
            ["field 'flows' must be a list"],
            id="flows-not-a-list",
        ),
    ],
)
def test_show_bad_report(
    tmp_path: Path, content: str, fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "report.json", content)
    assert main(["show", str(path)]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert_usage_error(err, str(path), *fragments)


def test_show_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path / "nope")]) == 4
    assert_usage_error(capsys.readouterr().err, str(tmp_path / "nope"), "no such report file")
    # A run directory without report.json (a run still going, or killed).
    assert main(["show", str(tmp_path)]) == 4
    assert_usage_error(capsys.readouterr().err, str(tmp_path / "report.json"), "no such")
    assert main(["show", "latest", "--output", str(tmp_path)]) == 4
    assert_usage_error(capsys.readouterr().err, str(tmp_path / "latest"), "no such run")


# --- argument errors -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["list"], ["show", "a", "--bogus"]])
def test_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert "pytest-runset" in err
    assert "error:" in err
    assert "Traceback" not in err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "list", "show"):
        assert command in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pytest-runset ")


# --- real processes --------------------------------------------------------------------------


def console_script() -> str:
    scripts = sysconfig.get_path("scripts")
    found = shutil.which("pytest-runset", path=os.pathsep.join([scripts, os.environ["PATH"]]))
    assert found, "the pytest-runset console script is not installed"
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_console_script(runset_file: Path, tmp_path: Path) -> None:
    script = console_script()
    result = run(script, "validate", str(runset_file))
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"{runset_file}: ok (3 flows)\n",
        "",
    )
    bad = write(tmp_path / "bad.toml", BAD_TIMEOUT)
    result = run(script, "validate", str(bad))
    assert result.returncode == 4
    assert result.stdout == ""
    assert_usage_error(result.stderr, str(bad), "field 'timeout'")
    result = run(script, "list", "--json", str(runset_file))
    assert result.returncode == 0, result.stderr
    assert [flow["slug"] for flow in json.loads(result.stdout)] == [
        "smoke-check",
        "retried",
        "later",
    ]


def test_python_m_show_on_a_real_run(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # wide enough for every message
    result = run(sys.executable, "-m", "pytest_runset.cli", "show", str(run_dir))
    assert result.returncode == 1, result.stderr
    check_show_output(result.stdout)
    result = run(
        sys.executable, "-m", "pytest_runset.cli", "show", "latest", "--output", str(run_dir.parent)
    )
    assert result.returncode == 1, result.stderr
    check_show_output(result.stdout)
    result = run(console_script(), "show", "latest", cwd=run_dir.parent.parent)
    assert result.returncode == 1, result.stderr
    check_show_output(result.stdout)
    bad = write(tmp_path / "report.json", '{"schema": 1}')
    result = run(sys.executable, "-m", "pytest_runset.cli", "show", str(bad))
    assert result.returncode == 4
    assert_usage_error(result.stderr, str(bad), "not a pytest-runset report")


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    # More output than a pipe buffer holds, read one line of it, then hang up (``| head -1``).
    flows = "".join(
        f'[[flows]]\nname = "flow number {i}"\ncommand = ["true"]\n' for i in range(2000)
    )
    path = write(tmp_path / "many.toml", flows)
    with subprocess.Popen(
        [console_script(), "list", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().startswith(b"SLUG")
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    assert err == ""
    assert proc.returncode in (0, 1)


def test_cli_does_not_import_pytest(runset_file: Path) -> None:
    code = (
        "import sys\n"
        "from pytest_runset.cli import main\n"
        f"main(['validate', {str(runset_file)!r}])\n"
        "print(sorted(m for m in sys.modules if m == 'pytest' or m.startswith('_pytest')))\n"
    )
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"

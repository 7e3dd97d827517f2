"""Non-ASCII names under a C locale without Python's UTF-8 mode (``PYTHONUTF8=0 LC_ALL=C``).

There Python encodes file names, arguments and environment values as ASCII: a flow named
"café" could not be started, a spec file ``spec-ü.toml`` not opened, and printing "é" raised.
Each test runs pytest (and ``pytest-runset``) in that environment and expects the right
statuses, the UTF-8 bytes on disk, escapes on the terminal and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report

RUNSET = """
[[flows]]
name = "café"
command = ["sh", "-c", "echo é; echo é >&2; echo \\"$RUNSET_FLOW\\" > name.txt"]
cwd = "{flow_dir}"

[[flows]]
name = "échoue"
command = ["sh", "-c", "echo raté >&2; exit 1"]

[[flows]]
name = "spec ü"
spec = "spec-ü.toml"
"""

SPEC = """
steps = [
  { goto = "data:text/html;charset=utf-8,<h1>caf%C3%A9</h1>" },
  { expect_text = "h1", text = "café" },
]
"""


@pytest.fixture(autouse=True)
def c_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONUTF8", "0")
    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.setenv("LANG", "C")
    monkeypatch.delenv("PYTHONIOENCODING", raising=False)
    monkeypatch.delenv("LC_CTYPE", raising=False)


def _no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output, output
        assert "INTERNALERROR" not in output, output
        assert "UnicodeEncodeError" not in output, output


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_runset.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        # Wide enough that no message is cut to fit.
        env={**os.environ, "COLUMNS": "400"},
        check=False,
    )


def test_the_locale_is_really_ascii() -> None:
    # What the other tests rely on: a child Python of this environment encodes names as ASCII.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; print(sys.getfilesystemencoding(), sys.flags.utf8_mode)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["ascii", "0"]


def test_flows_named_cafe_and_a_spec_file_named_spec_u(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(RUNSET)
    (pytester.path / "spec-ü.toml").write_text(SPEC, encoding="utf-8")

    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "loc", "-p", "no:cacheprovider",
        "--junitxml", "junit.xml",
    )  # fmt: skip

    assert result.ret == 1, result.stdout.str()
    _no_traceback(result.stdout.str(), result.stderr.str())
    run_dir = pytester.path / "runset-results" / "loc"
    flows = flows_by_name(load_report(run_dir))
    assert {name: flow["status"] for name, flow in flows.items()} == {
        "café": "passed",
        "échoue": "failed",
        "spec ü": "passed",
    }
    assert flows["échoue"]["message"] == "exit code 1: raté"
    cafe = run_dir / flows["café"]["dir"]
    # The flow's output and its environment are the UTF-8 bytes, whatever the locale.
    assert (cafe / "stdout.log").read_bytes() == "é\n".encode()
    assert (cafe / "stderr.log").read_bytes() == "é\n".encode()
    assert (cafe / "name.txt").read_bytes() == "café\n".encode()
    journal = [
        json.loads(line)
        for line in (run_dir / "journal.jsonl").read_text("utf-8").split("\n")
        if line
    ]
    assert "café" in {event.get("name") for event in journal}
    assert "café" in (run_dir / "report.html").read_text(encoding="utf-8")
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    failures = [case.find("failure") for case in cases]
    assert any(f is not None and "raté" in (f.get("message") or "") for f in failures)

    shown = _cli("show", "loc", "--output", "runset-results", cwd=pytester.path)

    assert shown.returncode == 1, shown.stderr
    _no_traceback(shown.stdout, shown.stderr)
    # ASCII stdout: escaped, never an error.
    assert "caf\\xe9" in shown.stdout
    assert "exit code 1: rat\\xe9" in shown.stdout
    listed = _cli("list", "run-set.toml", cwd=pytester.path)
    assert listed.returncode == 0, listed.stderr
    assert "spec \\xfc" in listed.stdout


def test_a_run_set_file_output_directory_and_folder_with_non_ascii_names(
    pytester: pytest.Pytester,
) -> None:
    folder = pytester.path / "répertoire"
    folder.mkdir()
    (folder / "suite-é.toml").write_text(
        '[runset]\noutput = "résultats"\n'
        '[[flows]]\nname = "ça marche"\n'
        'command = ["sh", "-c", "pwd; echo ok > \\"$RUNSET_FLOW_DIR/é.txt\\""]\n'
        '[[flows]]\nname = "copie"\nworkspace = "copy"\ncommand = ["ls"]\n',
        encoding="utf-8",
    )

    result = pytester.runpytest_subprocess(
        "--runset", os.path.join("répertoire", "suite-é.toml"), "--runset-run-id", "nom",
        "-p", "no:cacheprovider",
    )  # fmt: skip

    assert result.ret == 0, result.stdout.str()
    _no_traceback(result.stdout.str(), result.stderr.str())
    run_dir = folder / "résultats" / "nom"
    report = load_report(run_dir)
    assert report["runset"]["name"] == "suite-é"
    assert {flow["name"]: flow["status"] for flow in report["flows"]} == {
        "ça marche": "passed",
        "copie": "passed",
    }
    assert (run_dir / "a-marche" / "é.txt").read_text() == "ok\n"
    assert (run_dir / "a-marche" / "stdout.log").read_text(encoding="utf-8") == f"{folder}\n"
    assert "suite--.toml" not in (run_dir / "copie" / "stdout.log").read_text(encoding="utf-8")
    assert "suite-é.toml" in (run_dir / "copie" / "stdout.log").read_text(encoding="utf-8")

    shown = _cli("show", str(run_dir), cwd=pytester.path)
    assert shown.returncode == 0, shown.stderr
    _no_traceback(shown.stdout, shown.stderr)
    validated = _cli("validate", os.path.join("répertoire", "suite-é.toml"), cwd=pytester.path)
    assert validated.returncode == 0, validated.stderr

"""Flows that attack the files the plugin writes: swapping their directory for a link, planting
links where the plugin's artifacts go, leaking a persona's secret through a callable's output or
a browser trace, and metrics that are not JSON. Real sessions through pytest, real gateways,
real files (and a real Chromium for the browser flows)."""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_support import run_in, serve_example_app

from conftest import flows_by_name, load_report
from pytest_runset.gateway.masking import forms

example_app = pytest.fixture(scope="module")(serve_example_app)

# Quotes, a backslash, a space, a slash, a plus and a non-ASCII letter: a trace holds this
# JSON-escaped, a form post URL-encoded.
SECRET = 'Wond3r "land"/é+*x\\y'


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} in a file that must be strict JSON")


def strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constant)


def _victim(directory: Path) -> Path:
    victim = directory / "victim"
    victim.mkdir()
    (victim / "precious.png").write_bytes(b"not yours")
    (victim / "precious.zip").write_bytes(b"not yours either")
    return victim


def _untouched(victim: Path) -> None:
    assert sorted(p.name for p in victim.iterdir()) == ["precious.png", "precious.zip"]
    assert (victim / "precious.png").read_bytes() == b"not yours"
    assert (victim / "precious.zip").read_bytes() == b"not yours either"


def _leaks(path: Path, secret: str) -> list[str]:
    """Where under ``path`` (zip members included) any form of ``secret`` is found."""
    needles = [form.encode() for form in forms(secret)]
    found: list[str] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
        data = file.read_bytes()
        if any(needle in data for needle in needles):
            found.append(str(file))
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                for member in archive.namelist():
                    content = archive.read(member)
                    if any(needle in content for needle in needles):
                        found.append(f"{file}!{member}")
    return found


SWAPPING = """
import os, subprocess

def swap(flow_dir, persona):
    os.rename(flow_dir, str(flow_dir) + ".moved")
    os.symlink(os.environ["VICTIM"], flow_dir)
    print("password", persona["password"])
    subprocess.run(["sh", "-c", "echo child $RUNSET_PERSONA_PASSWORD >&2"], check=True)
"""

SWAP_RUNSET = """
[runset]
timeout = 60

[personas.alice]
username = "alice"
password_env = "ALICE_PASSWORD"

[[flows]]
name = "command swaps"
persona = "alice"
env = {{ VICTIM = "{victim}" }}
command = ["sh", "swap.sh"]

[[flows]]
name = "callable swaps"
persona = "alice"
env = {{ VICTIM = "{victim}" }}
callable = "swapping:swap"
"""


def test_flows_that_swap_their_directory_for_a_link_get_nothing_written_there(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALICE_PASSWORD", SECRET)
    victim = _victim(pytester.path)
    (pytester.path / "swapping.py").write_text(SWAPPING)
    (pytester.path / "swap.sh").write_text(
        'mv "$RUNSET_FLOW_DIR" "$RUNSET_FLOW_DIR.moved"\n'
        'ln -s "$VICTIM" "$RUNSET_FLOW_DIR"\n'
        "echo pw $RUNSET_PERSONA_PASSWORD\n"
    )
    write_runset(SWAP_RUNSET.format(victim=victim))
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "swap", "-p", "no:cacheprovider"
    )
    _untouched(victim)
    run_dir = pytester.path / "runset-results" / "swap"
    flows = flows_by_name(load_report(run_dir))
    for name, slug in (("command swaps", "command-swaps"), ("callable swaps", "callable-swaps")):
        flow = flows[name]
        assert flow["status"] == "passed", flow
        moved = run_dir / f"{slug}.moved"
        assert strict_json((moved / "result.json").read_text())["status"] == "passed"
        assert any(
            f"the flow replaced its directory {run_dir / slug} (the original is now {moved})"
            in warning
            for warning in flow["warnings"]
        ), flow["warnings"]
    assert (run_dir / "command-swaps.moved" / "stdout.log").read_text() == "pw ***\n"
    assert (run_dir / "callable-swaps.moved" / "stdout.log").read_text() == "password ***\n"
    assert (run_dir / "callable-swaps.moved" / "stderr.log").read_text() == "child ***\n"
    assert result.ret == 0


LEAKING = """
import subprocess, sys

def leak(persona):
    print("stdout", persona["password"])
    print("stderr", persona["password"], file=sys.stderr)
    subprocess.run(["sh", "-c", "echo child $RUNSET_PERSONA_PASSWORD"], check=True)
    subprocess.run(["sh", "-c", "echo child $RUNSET_PERSONA_PASSWORD >&2"], check=True)
    # A daemon-ish child still writing after the callable returned.
    subprocess.Popen(["sh", "-c", "sleep 0.3; echo late $RUNSET_PERSONA_PASSWORD"])
    raise AssertionError("bad password " + persona["password"])
"""


def test_a_callables_output_and_its_childrens_never_hold_the_secret(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALICE_PASSWORD", SECRET)
    (pytester.path / "leaking.py").write_text(LEAKING)
    write_runset(
        '[personas.alice]\nusername = "alice"\npassword_env = "ALICE_PASSWORD"\n'
        '[[flows]]\nname = "leaky callable"\npersona = "alice"\ncallable = "leaking:leak"\n'
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "leak", "-v", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    output = result.stdout.str() + result.stderr.str()
    for form in forms(SECRET):
        assert form not in output
    assert "bad password ***" in output
    run_dir = pytester.path / "runset-results" / "leak"
    assert _leaks(run_dir, SECRET) == []
    flow_dir = run_dir / "leaky-callable"
    assert (flow_dir / "stdout.log").read_text().splitlines()[:2] == ["stdout ***", "child ***"]
    assert (flow_dir / "stderr.log").read_text().splitlines()[:2] == ["stderr ***", "child ***"]


METRICS = """
import json, os

def _report(text):
    with open(os.environ["RUNSET_REPORT"], "w") as handle:
        handle.write(text)

def deep():
    data = {}
    inner = data
    for _ in range(399):
        inner["x"] = {}
        inner = inner["x"]
    _report(json.dumps({"metrics": data}))

def nan():
    _report('{"metrics": {"score": NaN}}')

def huge():
    _report('{"metrics": {"score": 1e999, "low": -1e999}}')
"""

METRICS_RUNSET = """
[runset]
timeout = 120

[[flows]]
name = "deep"
callable = "metricflows:deep"

[[flows]]
name = "nan"
callable = "metricflows:nan"

[[flows]]
name = "huge"
callable = "metricflows:huge"

[[flows]]
name = "huge command"
command = ["sh", "huge.sh"]
"""


def test_metrics_that_are_not_json_end_the_flow_at_once_and_every_file_stays_json(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "metricflows.py").write_text(METRICS)
    (pytester.path / "huge.sh").write_text(
        """echo '{"metrics": {"score": 1e999}}' > "$RUNSET_REPORT"\n"""
    )
    write_runset(METRICS_RUNSET)
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "metrics", "-p", "no:cacheprovider"
    )
    elapsed = time.monotonic() - started
    assert result.ret == 1
    # Far below the flows' 120 s timeout, let alone the backstop after it.
    assert elapsed < 60, elapsed
    run_dir = pytester.path / "runset-results" / "metrics"
    report = strict_json((run_dir / "report.json").read_text())
    for line in (run_dir / "journal.jsonl").read_text().splitlines():
        strict_json(line)
    flows = flows_by_name(report)
    assert flows["deep"]["message"] == ("malformed RUNSET_REPORT: nested more than 64 levels deep")
    assert flows["nan"]["message"] == (
        "malformed RUNSET_REPORT (flow-report.json): NaN is not a JSON number"
    )
    for name in ("huge", "huge command"):
        assert flows[name]["message"] == (
            "malformed metrics: metrics.score is inf, not a finite number "
            "(JSON has no NaN/Infinity)"
        )
    for flow in flows.values():
        assert flow["status"] == "error", flow
        assert flow["metrics"] == {}
        assert flow["duration_s"] < 30


# -- browser flows (a real Chromium) -------------------------------------------------------------

PLANT = """
ln -s "$VICTIM/precious.png" "$RUNSET_FLOW_DIR/failure.png"
ln -s "$VICTIM/precious.zip" "$RUNSET_FLOW_DIR/trace.zip"
ln -s "$VICTIM" "$RUNSET_FLOW_DIR/shots"
exec sleep 600
"""

PLANTING = """
import os

def plant(page, flow_dir, base_url):
    victim = os.environ["VICTIM"]
    for name, target in (
        ("failure.png", "precious.png"),
        ("trace.zip", "precious.zip"),
        ("result.json", "precious.png"),
    ):
        os.symlink(os.path.join(victim, target), os.path.join(flow_dir, name))
    page.goto(base_url + "/login")
    raise AssertionError("planted")
"""

BROWSER_RUNSET = """
[runset]
timeout = 60

[personas.alice]
username = "alice"
password_env = "ALICE_PASSWORD"

[[flows]]
name = "types the password"
persona = "alice"
steps = [
  {{ goto = "/login" }},
  {{ fill = "#username", value = "{{persona.username}}" }},
  {{ fill = "#password", value = "{{persona.password}}" }},
  {{ press = "#password", key = "Enter" }},
  {{ expect_url = "/items", timeout = 1 }},
]

[[flows]]
name = "steps with planted links"
env = {{ VICTIM = "{victim}" }}
sidecar = {{ command = ["sh", "plant.sh"] }}
steps = [{{ goto = "/login" }}, {{ screenshot = "shots/login.png" }}]

[[flows]]
name = "callable plants links"
env = {{ VICTIM = "{victim}" }}
callable = "planting:plant"
"""

BrowserRun = tuple[int, pytest.LineMatcher, dict[str, Any], Path, Path]


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory: pytest.TempPathFactory, example_app: str) -> BrowserRun:
    directory = tmp_path_factory.mktemp("hostile-browser")
    victim = _victim(directory)
    (directory / "plant.sh").write_text(PLANT)
    (directory / "planting.py").write_text(PLANTING)
    (directory / "run-set.toml").write_text(BROWSER_RUNSET.format(victim=victim))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALICE_PASSWORD", SECRET)
        code, output, report, run_dir = run_in(directory, "browser", base_url=example_app)
    return code, output, report, run_dir, victim


def _real_artifacts(flow_dir: Path) -> None:
    for name in ("failure.png", "trace.zip", "result.json"):
        assert not (flow_dir / name).is_symlink(), name
    assert (flow_dir / "failure.png").read_bytes().startswith(b"\x89PNG")
    assert zipfile.is_zipfile(flow_dir / "trace.zip")
    strict_json((flow_dir / "result.json").read_text())


def test_links_planted_at_browser_artifacts_are_replaced_never_followed(
    browser_run: BrowserRun,
) -> None:
    _, _, report, run_dir, victim = browser_run
    _untouched(victim)
    flows = flows_by_name(report)
    steps = flows["steps with planted links"]
    assert steps["status"] == "failed", steps
    assert steps["message"].startswith(
        "step 2/2 (screenshot \"shots/login.png\"): cannot write screenshot 'shots/login.png'"
    ), steps["message"]
    _real_artifacts(run_dir / "steps-with-planted-links")
    callable_flow = flows["callable plants links"]
    assert callable_flow["status"] == "failed", callable_flow
    assert callable_flow["message"] == "AssertionError: planted"
    _real_artifacts(run_dir / "callable-plants-links")


def test_a_trace_keeps_no_form_of_a_typed_secret(browser_run: BrowserRun) -> None:
    code, output, report, run_dir, _ = browser_run
    assert code == 1
    flow = flows_by_name(report)["types the password"]
    assert flow["status"] == "failed", flow
    assert flow["message"].startswith('step 5/5 (expect_url "/items")'), flow["message"]
    trace = run_dir / "types-the-password" / "trace.zip"
    assert _leaks(run_dir, SECRET) == []
    for form in forms(SECRET):
        assert not any(form in line for line in output.lines)
    with zipfile.ZipFile(trace) as archive:
        assert archive.testzip() is None
        events = archive.read("trace.trace").decode().splitlines()
        # Still a trace: every event is JSON; the typed value is the mask.
        assert all(isinstance(json.loads(line), dict) for line in events)
        assert any('"value":"***"' in line for line in events)
        # The form post (URL-encoded) is masked in the network resources too.
        assert any(b"password=***" in archive.read(name) for name in archive.namelist())

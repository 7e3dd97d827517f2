"""Headed runs and PWDEBUG: no display is one line and exit 4, before any flow starts; one
browser flow under PWDEBUG keeps no timeout of its own; under a virtual display a selected
journey runs headed with its slow_mo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_runset.session.headed import (
    DEBUG_TIMEOUT_S,
    display_problem,
    prepare_debugging,
    pwdebug,
)
from pytest_runset.session.settings import SETTINGS, resolve_settings

NO_DISPLAY: dict[str, str] = {}


def test_a_display_means_no_problem() -> None:
    for environ in ({"DISPLAY": ":0"}, {"WAYLAND_DISPLAY": "wayland-0"}):
        assert display_problem(environ, headed_option=True, headed_flows=["a"]) is None


def test_headless_runs_need_no_display() -> None:
    assert display_problem(NO_DISPLAY, headed_option=False, headed_flows=[]) is None
    assert display_problem({"PWDEBUG": "0"}, headed_option=False, headed_flows=[]) is None


def test_each_way_of_asking_for_a_window_is_named_in_one_line() -> None:
    cases = {
        "--runset-headed: ": display_problem(NO_DISPLAY, headed_option=True, headed_flows=[]),
        "PWDEBUG=1: ": display_problem({"PWDEBUG": "1"}, headed_option=False, headed_flows=[]),
        "headless = false (flow 'login' and 1 more): ": display_problem(
            NO_DISPLAY, headed_option=False, headed_flows=["login", "pay"]
        ),
    }
    for start, problem in cases.items():
        assert problem is not None
        assert problem.startswith(start), problem
        assert "\n" not in problem
        assert problem.endswith("run pytest under a virtual one: xvfb-run -a pytest ...")


def test_pwdebug_values() -> None:
    assert pwdebug({"PWDEBUG": "1"})
    assert pwdebug({"PWDEBUG": "inspector"})
    assert not pwdebug({"PWDEBUG": "console"})  # the console API only: stays headless
    assert not pwdebug({"PWDEBUG": "0"})
    assert not pwdebug({"PWDEBUG": "false"})
    assert not pwdebug({})


RUNSET = """
[[flows]]
name = "journey"
steps = [{ goto = "about:blank" }]

[[flows]]
name = "script"
command = ["true"]
"""


def run_pytest(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PWDEBUG") and not k.startswith("PYTEST_")
    }
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--runset", "run-set.toml", "-p", "no:cacheprovider",
         *args],
        cwd=directory, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "env", "why"),
    [
        (["--runset-headed"], {}, "--runset-headed"),
        ([], {"PWDEBUG": "1"}, "PWDEBUG=1"),
    ],
)
def test_a_headed_run_without_a_display_is_a_one_line_usage_error(
    tmp_path: Path, args: list[str], env: dict[str, str], why: str
) -> None:
    (tmp_path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    result = run_pytest(tmp_path, *args, "-k", "journey", **env)
    assert result.returncode == 4, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        f"ERROR: {why}: no display to show the browser on ($DISPLAY and $WAYLAND_DISPLAY are "
        "unset); run pytest under a virtual one: xvfb-run -a pytest ..."
    ]
    assert "Traceback" not in result.stdout
    # Nothing started: no flow directory was made.
    assert not list(tmp_path.glob("runset-results/*/journey"))


def test_headed_without_browser_flows_selected_runs_as_usual(tmp_path: Path) -> None:
    (tmp_path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    result = run_pytest(tmp_path, "--runset-headed", "-k", "script")
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_browser_flow_under_pwdebug_keeps_no_timeout(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pytester.parseconfig()
    config.stash[SETTINGS] = resolve_settings(config)
    journey = SimpleNamespace(flow=SimpleNamespace(name="j", browser=True, browser_profile=None))
    script = SimpleNamespace(flow=SimpleNamespace(name="s", browser=False, browser_profile=None))
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("PWDEBUG", raising=False)
    prepare_debugging(config, [journey])  # type: ignore[list-item]
    assert config.stash[SETTINGS].timeout_override is None
    monkeypatch.setenv("PWDEBUG", "1")
    prepare_debugging(config, [journey, script])  # type: ignore[list-item]
    assert config.stash[SETTINGS].timeout_override is None  # two flows: each keeps its own
    prepare_debugging(config, [journey])  # type: ignore[list-item]
    assert config.stash[SETTINGS].timeout_override == DEBUG_TIMEOUT_S


PROBE = """
import time

def probe(page, flow_dir):
    page.set_content("<button>b</button>")
    start = time.monotonic()
    for _ in range(3):
        page.click("button")
    took = time.monotonic() - start
    (flow_dir / "probe.txt").write_text(page.evaluate("navigator.userAgent") + f"\\n{took}\\n")
"""


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (Debian's xvfb)")
def test_one_journey_runs_headed_with_its_slow_mo_under_xvfb_run(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "probe.py").write_text(PROBE, encoding="utf-8")
    (tmp_path / "run-set.toml").write_text(
        '[[flows]]\nname = "probe"\ncallable = "flows.probe:probe"\n'
        "browser = { slow_mo = 500 }\n" + RUNSET,
        encoding="utf-8",
    )
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PWDEBUG") and not k.startswith("PYTEST_")
    }
    result = subprocess.run(
        ["xvfb-run", "-a", sys.executable, "-m", "pytest", "--runset", "run-set.toml",
         "-p", "no:cacheprovider", "--runset-run-id", "h", "-k", "probe", "--runset-headed"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    agent, took = (tmp_path / "runset-results/h/probe/probe.txt").read_text().split("\n")[:2]
    assert "Chrome/" in agent
    assert "HeadlessChrome" not in agent  # a window, on the virtual display
    assert float(took) >= 3 * 0.5  # each click waited slow_mo

"""``pytest-runset install-browser``: the decision in sentences, then the real command.

The decision (:func:`next_step`, :func:`install`) is tested with fake machines and fake steps:
no download, no apt, no root needed. The real command then runs its real steps on a machine
made to look fresh: Playwright's browsers in an empty directory and its download host a closed
port (the download really runs, and fails as it does where only package mirrors are reachable),
no Chromium on ``PATH`` until a fake ``apt-get`` on ``PATH`` "installs" one (a wrapper of this
machine's own), root or not as told. A download that hangs is stopped with its children. And
on this machine as it is, where a browser is present (tests need one anyway: see .ci/run), it
must say so and exit 0 quickly.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import closed_port

from conftest import process_alive, wait_for
from pytest_runset.cli import install_browser
from pytest_runset.cli.install_browser import (
    Actions,
    Machine,
    Step,
    install,
    manual_command,
    next_step,
    run_step,
)
from pytest_runset.gateway.runners import browser_host

REPO = Path(__file__).resolve().parent.parent


class FakeMachine:
    """Steps that succeed or fail as told; a browser that works once a given step ran."""

    def __init__(self, outcomes: dict[Step, bool], works_after: set[Step]) -> None:
        self.outcomes = outcomes
        self.works_after = works_after
        self.ran: list[Step] = []
        self.said: list[str] = []

    def run(self, step: Step) -> bool:
        self.ran.append(step)
        return self.outcomes.get(step, False)

    def working(self) -> str | None:
        done = {step for step in self.ran if self.outcomes.get(step)}
        return "a browser (/x/chrome)" if done & self.works_after else None

    def actions(self) -> Actions:
        return Actions(run=self.run, working=self.working, say=self.said.append)


def machine(
    browser: str | None = None, *, playwright: bool = True, root: bool = False, apt: bool = True
) -> Machine:
    return Machine(browser=browser, playwright=playwright, root=root, apt=apt)


def test_a_browser_already_here_is_kept_and_nothing_runs() -> None:
    fake = FakeMachine({}, set())
    code = install(machine("the system's Chromium (/usr/bin/chromium)"), fake.actions())
    assert code == 0
    assert fake.ran == []
    assert fake.said == [
        "install-browser: a browser is already here: the system's Chromium (/usr/bin/chromium)"
    ]


def test_playwrights_download_is_tried_first_and_is_enough_when_it_works() -> None:
    fake = FakeMachine({"download": True}, {"download"})
    assert install(machine(root=True), fake.actions()) == 0
    assert fake.ran == ["download"]
    assert fake.said[-1] == "install-browser: installed: a browser (/x/chrome)"


def test_a_failed_download_as_root_falls_back_to_the_system_chromium_through_apt() -> None:
    fake = FakeMachine({"download": False, "apt": True}, {"apt"})
    assert install(machine(root=True), fake.actions()) == 0
    assert fake.ran == ["download", "apt"]
    assert "apt-get update && apt-get install -y chromium" in fake.said[1]


def test_a_download_that_does_not_launch_gets_its_libraries_as_root() -> None:
    fake = FakeMachine({"download": True, "deps": True}, {"deps"})
    assert install(machine(root=True), fake.actions()) == 0
    assert fake.ran == ["download", "deps"]


def test_when_nothing_works_as_root_every_step_is_tried_once_then_the_command_printed() -> None:
    fake = FakeMachine({"download": True, "deps": True, "apt": False}, set())
    assert install(machine(root=True), fake.actions()) == 1
    assert fake.ran == ["download", "deps", "apt"]
    assert fake.said[-1].startswith("install-browser: no browser installed; run: ")


def test_not_root_a_failed_download_prints_the_exact_command_and_exits_1() -> None:
    fake = FakeMachine({"download": False}, set())
    assert install(machine(root=False), fake.actions()) == 1
    assert fake.ran == ["download"]  # apt needs root: never tried
    assert fake.said[-1] == (
        "install-browser: no browser installed; run: "
        "sudo apt-get update && sudo apt-get install -y chromium"
    )


def test_the_printed_command_fits_the_machine() -> None:
    downloaded: dict[Step, bool] = {"download": True}
    failed: dict[Step, bool] = {"download": False}
    assert manual_command(machine(), downloaded) == (
        f"sudo {sys.executable} -m playwright install-deps chromium"
    )
    assert manual_command(machine(apt=False), failed).startswith(
        f"{sys.executable} -m playwright install chromium"
    )
    assert manual_command(machine(root=True), failed) == (
        "apt-get update && apt-get install -y chromium"
    )


def test_without_playwright_nothing_is_tried() -> None:
    fake = FakeMachine({}, set())
    assert install(machine(playwright=False, root=True), fake.actions()) == 1
    assert fake.ran == []
    assert "pip install playwright" in fake.said[0]


@pytest.mark.parametrize(
    ("tried", "root", "expected"),
    [
        ({}, False, "download"),
        ({"download": False}, False, None),
        ({"download": False}, True, "apt"),
        ({"download": True}, True, "deps"),
        ({"download": True, "deps": False}, True, "apt"),
        ({"download": False, "apt": False}, True, None),
    ],
)
def test_next_step(tried: dict[Step, bool], root: bool, expected: Step | None) -> None:
    assert next_step(machine(root=root), tried) == expected


def test_no_apt_means_no_apt_step_even_as_root() -> None:
    assert next_step(machine(root=True, apt=False), {"download": False}) is None


def test_install_browser_on_this_machine_finds_the_browser_quickly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest_runset.cli", "install-browser"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 15
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("install-browser: a browser is already here: ")
    assert "Chromium (/" in lines[0]
    assert result.stderr == ""


# --- the real steps on a machine made to look fresh ----------------------------------------

# Logs its arguments and environment; `install ... chromium` puts a `chromium` on PATH that
# starts this machine's own (with a PATH of its own: Debian's /usr/bin/chromium is a script).
FAKE_APT = """#!/bin/sh
echo "$* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> "{log}"
if [ "$1" = install ]; then
    printf '#!/bin/sh\\nPATH=/usr/bin:/bin exec {chromium} "$@"\\n' > "{bin}/chromium"
    /bin/chmod +x "{bin}/chromium"
fi
"""


@pytest.fixture
def fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """No browser here, Playwright's download unreachable, a fake apt-get; returns the fake
    bin directory and apt-get's log."""
    system = browser_host.find_system_chromium()
    assert system is not None, "these tests start this machine's Chromium"
    fake_bin, log = tmp_path / "bin", tmp_path / "apt.log"
    fake_bin.mkdir()
    apt = fake_bin / "apt-get"
    apt.write_text(FAKE_APT.format(log=log, bin=fake_bin, chromium=system), encoding="utf-8")
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_bin))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "no-browsers"))
    monkeypatch.setenv("PLAYWRIGHT_DOWNLOAD_HOST", f"http://127.0.0.1:{closed_port()}")
    # The absolute places the plugin also looks in (/usr/bin/chromium, ...) hold nothing here:
    # only PATH, which has no Chromium until apt-get "installs" it.
    original = browser_host.find_system_chromium
    monkeypatch.setattr(browser_host, "find_system_chromium", lambda: original(("chromium",)))
    return fake_bin, log


def said(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("install-browser: ")]


def test_on_a_fresh_machine_as_root_the_failed_download_falls_back_to_apt(
    fresh_machine: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    fake_bin, log = fresh_machine
    monkeypatch.setattr(install_browser.os, "geteuid", lambda: 0)
    assert install_browser.cmd_install_browser(argparse.Namespace()) == 0
    assert said(capfd.readouterr().out) == [
        f"install-browser: {sys.executable} -m playwright install chromium",
        "install-browser: apt-get update && apt-get install -y chromium",
        f"install-browser: installed: the system's Chromium ({fake_bin / 'chromium'})",
    ]
    assert log.read_text().splitlines() == [
        "update DEBIAN_FRONTEND=noninteractive",
        "install -y chromium DEBIAN_FRONTEND=noninteractive",
    ]


def test_on_a_fresh_machine_not_root_it_prints_the_apt_command_and_runs_no_apt(
    fresh_machine: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _, log = fresh_machine
    monkeypatch.setattr(install_browser.os, "geteuid", lambda: 1000)
    assert install_browser.cmd_install_browser(argparse.Namespace()) == 1
    assert said(capfd.readouterr().out) == [
        f"install-browser: {sys.executable} -m playwright install chromium",
        "install-browser: no browser installed; run: "
        "sudo apt-get update && sudo apt-get install -y chromium",
    ]
    assert not log.exists()


HANGS = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def test_a_download_that_hangs_is_stopped_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pid_file = tmp_path / "child.pid"
    hang = [sys.executable, "-c", HANGS, str(pid_file)]
    monkeypatch.setattr(install_browser, "DOWNLOAD_TIMEOUT_S", 2.0)
    monkeypatch.setattr(install_browser, "step_commands", lambda step: [hang])
    assert run_step("download") is False
    assert pid_file.exists()  # the child started before the step was stopped
    child = int(pid_file.read_text())
    assert wait_for(lambda: not process_alive(child), 10)
    assert "gave no result in 2s; stopped it" in capsys.readouterr().err

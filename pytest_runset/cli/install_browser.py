"""``install-browser``: make sure Playwright has a browser to drive, on a fresh machine too.

The order, decided by :func:`next_step` (pure: what the machine has and what was tried in,
the next thing to try out):

1. a browser is already here (Playwright's own Chromium, or a system Chromium the plugin finds
   by itself): say which, exit 0;
2. Playwright's own download (``python -m playwright install chromium``), bounded in time
   because a machine that reaches only its package mirrors may hang on it rather than fail;
3. as root with apt: the libraries a downloaded Chromium is missing
   (``python -m playwright install-deps chromium``), or, when the download failed, the system
   Chromium (``apt-get install -y chromium``), which the plugin finds by itself;
4. otherwise: one line with the exact command to run, exit 1.

After each step the browser must launch headless, as the plugin would launch it, before the
command says it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pytest_runset.cli.common import FAILED, OK

Step = Literal["download", "deps", "apt"]
# Long enough for Playwright's ~150 MB download on a slow link, short enough that a machine
# which cannot reach it falls back to apt without the user waiting for ever.
DOWNLOAD_TIMEOUT_S = 60.0
# A headless launch that takes longer than this does not count as working.
LAUNCH_TIMEOUT_S = 30.0
NO_PLAYWRIGHT = (
    "Playwright is not installed for this Python ({python}): "
    "pip install playwright (in a clone of pytest-runset: pip install -e '.[browser]'), "
    "then run pytest-runset install-browser again"
)


@dataclass(frozen=True)
class Machine:
    """What the machine has, as far as installing a browser goes."""

    # A browser Playwright can drive that is already here (a description with its path).
    browser: str | None
    # Playwright is importable: without it nothing can drive a browser, nor download one.
    playwright: bool
    root: bool
    # apt-get is on PATH (Debian, Ubuntu).
    apt: bool


def next_step(machine: Machine, tried: Mapping[Step, bool]) -> Step | None:
    """The next step to try, given the steps ``tried`` so far and whether each one ran to the
    end (the browser did not work after any of them); ``None`` when nothing is left to try."""
    if "download" not in tried:
        return "download"
    if not (machine.root and machine.apt):
        return None
    if tried["download"] and "deps" not in tried:
        # Downloaded but it does not launch: the system libraries it needs are missing.
        return "deps"
    if "apt" not in tried:
        return "apt"
    return None


def manual_command(machine: Machine, tried: Mapping[Step, bool]) -> str:
    """The exact command a user runs when this command could not install a browser."""
    python = sys.executable
    sudo = "" if machine.root else "sudo "
    if tried.get("download"):
        return f"{sudo}{python} -m playwright install-deps chromium"
    if machine.apt:
        return f"{sudo}apt-get update && {sudo}apt-get install -y chromium"
    return f"{python} -m playwright install chromium (on a machine that can reach its download)"


def step_commands(step: Step) -> list[list[str]]:
    """The processes a step runs, in order."""
    if step == "download":
        return [[sys.executable, "-m", "playwright", "install", "chromium"]]
    if step == "deps":
        return [[sys.executable, "-m", "playwright", "install-deps", "chromium"]]
    return [["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]]


@dataclass
class Actions:
    """What :func:`install` does to the machine; tests give fakes."""

    # Run a step's commands; True when every one exited 0.
    run: Callable[[Step], bool]
    # Whether a browser is now here and launches: its description, or None.
    working: Callable[[], str | None]
    say: Callable[[str], None]


def install(machine: Machine, actions: Actions) -> int:
    """Make sure a browser is here; return the exit code (0 it is, 1 it is not)."""
    if machine.browser is not None:
        actions.say(f"install-browser: a browser is already here: {machine.browser}")
        return OK
    if not machine.playwright:
        actions.say("install-browser: " + NO_PLAYWRIGHT.format(python=sys.executable))
        return FAILED
    tried: dict[Step, bool] = {}
    while (step := next_step(machine, tried)) is not None:
        shown = " && ".join(" ".join(argv) for argv in step_commands(step))
        actions.say(f"install-browser: {shown}")
        tried[step] = actions.run(step)
        found = actions.working() if tried[step] else None
        if found is not None:
            actions.say(f"install-browser: installed: {found}")
            return OK
    actions.say(f"install-browser: no browser installed; run: {manual_command(machine, tried)}")
    return FAILED


# --- the real machine ----------------------------------------------------------------------


def managed_chromium() -> str | None:
    """Where Playwright's own Chromium is, if it is downloaded (None otherwise, and without
    Playwright)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as playwright:
            path = str(playwright.chromium.executable_path)
    except Exception:
        return None
    return path if os.path.isfile(path) else None


def find_browser() -> str | None:
    """A browser the plugin would use, as the plugin looks for one: Playwright's own Chromium
    first, else a system Chromium."""
    from pytest_runset.gateway.runners.browser_host import find_system_chromium

    managed = managed_chromium()
    if managed is not None:
        return f"Playwright's Chromium ({managed})"
    system = find_system_chromium()
    return None if system is None else f"the system's Chromium ({system})"


def launches() -> str | None:
    """The browser found, if it starts headless as the plugin starts it; else None."""
    from pytest_runset.gateway.runners.browser_host import CHROMIUM_FLAGS, find_system_chromium

    found = find_browser()
    if found is None:
        return None
    from playwright.sync_api import sync_playwright

    executable = None if managed_chromium() else find_system_chromium()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable,
                args=list(CHROMIUM_FLAGS),
                timeout=LAUNCH_TIMEOUT_S * 1000,
            )
            browser.close()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"install-browser: {found} does not start: {first}", file=sys.stderr)
        return None
    return found


def run_step(step: Step) -> bool:
    """Run a step's commands with the user's terminal as their output; the download is
    bounded by :data:`DOWNLOAD_TIMEOUT_S`."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    timeout = DOWNLOAD_TIMEOUT_S if step == "download" else None
    for argv in step_commands(step):
        try:
            # A session of its own: on timeout the whole tree goes (Playwright's installer
            # runs its download in a node child that would otherwise go on).
            proc = subprocess.Popen(argv, env=env, start_new_session=True)
        except OSError as exc:
            print(f"install-browser: cannot run {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
            return False
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print(
                f"install-browser: {' '.join(argv[1:4])} gave no result in "
                f"{DOWNLOAD_TIMEOUT_S:.0f}s; stopped it",
                file=sys.stderr,
            )
            return False
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        if code != 0:
            return False
    return True


def this_machine() -> Machine:
    return Machine(
        browser=find_browser(),
        playwright=importlib.util.find_spec("playwright") is not None,
        root=hasattr(os, "geteuid") and os.geteuid() == 0,
        apt=shutil.which("apt-get") is not None,
    )


def cmd_install_browser(_args: argparse.Namespace) -> int:
    actions = Actions(run=run_step, working=launches, say=print)
    try:
        return install(this_machine(), actions)
    except KeyboardInterrupt:
        print("install-browser: interrupted", file=sys.stderr)
        return 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "install-browser",
        help="install a browser Playwright can drive (or say which command installs one)",
        description=(
            "Make sure browser flows have a browser: keep one that is already here; else "
            "download Playwright's Chromium; else, as root, install the system's Chromium with "
            "apt-get; else print the command to run. Exit 0 when a browser is here, 1 if not."
        ),
    )
    parser.set_defaults(func=cmd_install_browser)

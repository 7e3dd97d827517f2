"""Starts the example app for the example run-set (a stand-in for ``[[runset.services]]``).

pytest loads this file when it collects ``examples/run-set.toml``. Before the flows run, it
starts ``app/app.py`` on a free port of 127.0.0.1, waits for ``/health`` and exports
``EXAMPLE_APP_PORT``, which the run-set's ``base_url`` uses. When services exist, this file
becomes a ``[[runset.services]]`` entry with the same command. If ``EXAMPLE_APP_PORT`` is
already set, the app you started yourself is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

APP = Path(__file__).parent / "app" / "app.py"
PROCESS = pytest.StashKey[subprocess.Popen[str]]()
READY_TIMEOUT_S = 30.0


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise pytest.UsageError(f"the example app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise pytest.UsageError(f"the example app did not answer {url} in {READY_TIMEOUT_S:g}s")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("EXAMPLE_APP_PORT"):
        return
    proc = subprocess.Popen(
        [sys.executable, str(APP), "--port", "0", "--exit-with-parent"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    config.stash[PROCESS] = proc
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "serving on http://127.0.0.1:PORT/"
    port = line.rstrip("/\n").rsplit(":", 1)[-1]
    if not port.isdigit():
        proc.kill()
        raise pytest.UsageError(f"the example app did not start: {line.strip()!r}")
    _wait_healthy(f"http://127.0.0.1:{port}/health", proc)
    os.environ["EXAMPLE_APP_PORT"] = port


def pytest_unconfigure(config: pytest.Config) -> None:
    proc = config.stash.get(PROCESS, None)
    if proc is None:
        return
    os.environ.pop("EXAMPLE_APP_PORT", None)
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

"""Helpers for the browser tests: the example app on an ephemeral 127.0.0.1 port, and runs.

Browser tests use a real Chromium (Playwright's own, or the system one the plugin finds by
itself) and are not skipped when it is missing: CI installs one (see .ci/run).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import load_report

REPO = Path(__file__).resolve().parent.parent
APP_FILE = REPO / "examples" / "app" / "app.py"


def _app_module() -> Any:
    spec = importlib.util.spec_from_file_location("runset_example_app", APP_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_example_app() -> Iterator[str]:
    """The example app in a thread of the test process; yields its base URL."""
    server = _app_module().make_server(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run_flows(
    pytester: pytest.Pytester, run_id: str, *args: str, base_url: str | None = None
) -> tuple[pytest.RunResult, dict[str, Any], Path]:
    """Run ``run-set.toml`` in a pytest subprocess; return the result, report and run dir."""
    options = ["--runset", "run-set.toml", "--runset-run-id", run_id, "-p", "no:cacheprovider"]
    if base_url is not None:
        options += ["--runset-base-url", base_url]
    result = pytester.runpytest_subprocess(*options, *args)
    run_dir = pytester.path / "runset-results" / run_id
    return result, load_report(run_dir), run_dir


def run_in(
    directory: Path, run_id: str, *args: str, base_url: str | None = None, timeout: float = 600
) -> tuple[int, pytest.LineMatcher, dict[str, Any], Path]:
    """Like :func:`run_flows` in a directory of one's own (for module-scoped runs): returns the
    exit code, the output as a :class:`pytest.LineMatcher`, the report and the run dir."""
    options = ["--runset", "run-set.toml", "--runset-run-id", run_id, "-p", "no:cacheprovider"]
    if base_url is not None:
        options += ["--runset-base-url", base_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *options, *args],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    run_dir = directory / "runset-results" / run_id
    return (
        proc.returncode,
        pytest.LineMatcher(proc.stdout.splitlines()),
        load_report(run_dir),
        run_dir,
    )


def read_json(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def launch_chromium(playwright: Any) -> Any:
    """Chromium for tests that drive a browser themselves: Playwright's own when installed,
    else the system one the plugin would use (Debian's /usr/bin/chromium)."""
    from pytest_runset.gateway.runners.browser_host import find_system_chromium

    if os.path.isfile(playwright.chromium.executable_path):
        return playwright.chromium.launch()
    executable = find_system_chromium()
    assert executable is not None, "no Chromium: install Playwright's or the system's"
    return playwright.chromium.launch(executable_path=executable)

"""Shared helpers for pytest-runset's own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SCAN_VAR = b"RUNSET_FLOW_ID="

# A flow that builds a process tree the hard way: a child in its process group, a child in a
# session of its own, and a double-forked daemon (which escapes group and session). It records
# its cookie and pids in its flow directory, then hangs, unless its first argument is "exit".
TREE_SCRIPT = r"""
import os, subprocess, sys, time, pathlib
flow_dir = pathlib.Path(os.environ["RUNSET_FLOW_DIR"])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
subprocess.Popen(["sleep", "600"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        (flow_dir / "daemon.pid").write_text(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
deadline = time.monotonic() + 30
while not (flow_dir / "daemon.pid").exists() and time.monotonic() < deadline:
    time.sleep(0.01)
(flow_dir / "child.pid").write_text(str(child.pid))
(flow_dir / "cookie").write_text(os.environ["RUNSET_FLOW_ID"])
(flow_dir / "started").write_text("yes")
if sys.argv[1:] != ["exit"]:
    time.sleep(600)
"""


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead already)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def processes_with_cookie_prefix(prefix: str) -> list[int]:
    """Pids of live (non-zombie) processes whose RUNSET_FLOW_ID starts with ``prefix``."""
    needle = SCAN_VAR + prefix.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        if state in (b"Z", b"X"):
            continue
        if any(var.startswith(needle) for var in environ):
            found.append(int(entry))
    return found


# The fields of report.json the contract names (a report may carry more).
CONTRACT_FLOW_FIELDS = frozenset(
    {"name", "slug", "nodeid", "kind", "status", "attempts", "flaky", "duration_s", "started_s",
     "worker", "exit_code", "message", "dir", "logs", "artifacts", "persona", "ports", "tags"}
)  # fmt: skip
CONTRACT_SUMMARY_FIELDS = frozenset(
    {"total", "passed", "failed", "error", "timeout", "skipped", "interrupted", "not_run",
     "flaky", "sum_duration_s", "lower_bound_s", "parallelism_efficiency"}
)  # fmt: skip


def flow_spec(
    directory: Path,
    index: int,
    cookie: str,
    command: list[str],
    *,
    kind: str = "command",
    name: str | None = None,
    attempt: int = 1,
    timeout: float,
    grace: float,
) -> dict[str, Any]:
    """The plain-data spec of one command-flow attempt, as the controller sends a worker."""
    flow_dir = directory / f"flow-{index}"  # the worker creates it
    report = flow_dir / "flow-report.json"
    return {
        "flow_id": cookie,
        "kind": kind,
        "name": name or f"flow {index}",
        "slug": (name or f"flow-{index}").replace(" ", "-"),
        "attempt": attempt,
        "command": command,
        "shell": False,
        "cwd": str(directory),
        "env": {
            "RUNSET_FLOW_ID": cookie,
            "RUNSET_FLOW_DIR": str(flow_dir),
            "RUNSET_REPORT": str(report),
        },
        "flow_dir": str(flow_dir),
        "run_dir": str(directory),
        "report_path": str(report),
        "timeout_s": timeout,
        "kill_grace_s": grace,
    }


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` passes (generous bounds, no tight timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def load_report(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    return data


def flows_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {flow["name"]: flow for flow in report["flows"]}


@pytest.fixture
def write_runset(pytester: pytest.Pytester) -> Callable[..., Path]:
    """Write ``run-set.toml`` (or another name) into the pytester directory."""

    def write(text: str, name: str = "run-set.toml") -> Path:
        path = pytester.path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def spawn_pytest(pytester: pytest.Pytester) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start pytest as a real child process (for tests that signal or kill it)."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

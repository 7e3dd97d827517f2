"""Shared helpers of the benchmark scripts (not a test, not part of the package).

Every benchmark runs pytest-runset and its alternatives in one invocation on the same machine
and prints ratios: absolute times depend on the machine and its load, ratios much less. Each
measurement is the median of ``--repeat`` runs (default 3).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Unrelated plugins installed on the benchmark machine, disabled in every pytest contender
# alike: Hypothesis's plugin imports all of Hypothesis at the terminal summary (~0.2-0.9 s).
UNRELATED_PLUGINS = ("-p", "no:hypothesispytest", "-p", "no:randomly")

# A conftest for generated projects: the controller's peak RSS (VmHWM, read from /proc at the
# very end of the session) goes to a file, so the benchmark does not rely on ru_maxrss (which
# the gateways, children of the controller, would blur).
PEAK_RSS_CONFTEST = """
import os, pathlib

def pytest_unconfigure(config):
    target = os.environ.get("BENCH_PEAK_RSS_FILE")
    if not target:
        return
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            pathlib.Path(target).write_text(line.split()[1])
"""


@dataclass
class Timed:
    wall_s: float
    returncode: int
    stdout: str
    stderr: str


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every measured process: this checkout first on ``sys.path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.pop("PYTEST_ADDOPTS", None)
    # Byte-code caching as users have it (this machine's environment turns it off, which
    # makes every interpreter compile its imports again).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_XDIST_AUTO_NUM_WORKERS", None)
    env.update(extra or {})
    return env


def run_timed(
    command: Sequence[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> Timed:
    """Run ``command`` to its end; the wall time covers interpreter start-up and exit."""
    started = time.perf_counter()
    proc = subprocess.run(
        list(command), cwd=cwd, env=env or bench_env(), capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if check and proc.returncode != 0:
        shown = " ".join(command)
        sys.exit(
            f"benchmark command failed (exit {proc.returncode}): {shown}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return Timed(wall, proc.returncode, proc.stdout, proc.stderr)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def repeat(times: int, measure: Callable[[int], float]) -> float:
    """The median of ``times`` measurements (``measure(i)`` returns one number)."""
    return median([measure(index) for index in range(times)])


def can_import_xdist(python: str) -> bool:
    proc = subprocess.run(
        [python, "-c", "import xdist"], capture_output=True, check=False, env=bench_env()
    )
    return proc.returncode == 0


def xdist_python(option: str | None) -> str:
    """The interpreter for pytest-xdist baselines: the option, else this one if it has xdist."""
    python = option or sys.executable
    if not can_import_xdist(python):
        where = f"--xdist-python {option}" if option else f"this interpreter ({sys.executable})"
        sys.exit(
            f"pytest-xdist is not importable by {where}; pass --xdist-python PATH "
            "(e.g. --xdist-python /path/to/bench-venv/bin/python)"
        )
    return python


def xdist_command(python: str, workers: int, *extra: str) -> list[str]:
    """pytest-xdist without pytest-runset (its plugin would only add start-up time)."""
    return [
        python, "-m", "pytest", "-q", "-n", str(workers), "-p", "no:runset",
        *UNRELATED_PLUGINS, *extra,
    ]  # fmt: skip


def runset_command(runset: Path, workers: int, *extra: str) -> list[str]:
    """pytest-runset on this interpreter (which has no xdist: ``-n`` would be xdist's)."""
    return [
        sys.executable, "-m", "pytest", "--runset", str(runset), "--runset-workers", str(workers),
        "-q", *UNRELATED_PLUGINS, *extra,
    ]  # fmt: skip


def read_report(directory: Path, run_id: str) -> dict[str, Any]:
    path = directory / "runset-results" / run_id / "report.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def write_runset(path: Path, flows: Sequence[tuple[str, str]], header: str = "") -> Path:
    """A run-set of ``(name, body)`` flows; ``body`` is TOML lines inside ``[[flows]]``."""
    parts = ['[runset]\nname = "bench"\ntimeout = "10m"\n', header]
    for name, body in flows:
        parts.append(f'\n[[flows]]\nname = "{name}"\n{body}\n')
    path.write_text("".join(parts), encoding="utf-8")
    return path


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def machine_line() -> str:
    load = os.getloadavg()
    return (
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )

"""P3 browser: warm browser vs. a browser per flow vs. pytest-playwright + xdist (not a test).

    PYTHONPATH=$PWD python benchmarks/browser.py [--flows 24] [--workers 2] [--repeat 3]
        [--playwright-python /path/to/bench-venv/bin/python] [-- extra pytest args]

Runs the same 24 journeys of 3 steps (``goto /login``, ``fill #username``, ``expect_title``)
against the example app on 2 workers, median of ``--repeat`` runs each:

- pytest-runset with the default ``browser_isolation = "context"`` (each worker launches its
  browser once and gives every flow a fresh context);
- pytest-runset with ``browser_isolation = "process"`` (a new browser per flow);
- the same journeys written as pytest-playwright tests (``page`` fixture: one browser per
  worker, a fresh context per test) under pytest-xdist ``-n 2``, with the same Chromium and
  flags (a generated ``conftest.py`` sets ``executable_path``) and the same tracing
  (``--trace``: pytest-runset's ``--runset-trace`` and pytest-playwright's ``--tracing``;
  default ``retain-on-failure``, pytest-runset's default; pytest-playwright's is ``off``).
  Needs an interpreter with pytest-xdist and pytest-playwright (``--playwright-python``);
  without one, this contender is left out with a one-line note.

Prints each contender's whole-command wall (interpreter start-up included) and, for
pytest-runset, the run's wall from ``report.json`` (first dispatch to last result) and the
mean flow duration; then the ratios: warm vs. browser per flow (target >= 3x, on the run's
wall) and warm pytest-runset vs. pytest-playwright + xdist (target <= 1.0x, whole commands).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from _bench import (
    REPO,
    UNRELATED_PLUGINS,
    bench_env,
    machine_line,
    median,
    read_report,
    run_timed,
)

APP = REPO / "examples" / "app" / "app.py"

STEPS = """steps = [
  { goto = "/login" },
  { fill = "#username", value = "alice" },
  { expect_title = "Sign in - Example Shop" },
]"""

PLAYWRIGHT_TESTS = """
import pytest
from playwright.sync_api import expect


@pytest.mark.parametrize("number", range({flows}))
def test_journey(page, number):
    page.goto("/login")
    page.fill("#username", "alice")
    expect(page).to_have_title("Sign in - Example Shop")
"""

PLAYWRIGHT_CONFTEST = """
import pytest


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # The same browser and flags as pytest-runset's flows.
    return {{**browser_type_launch_args, "executable_path": {executable!r}, "args": {flags!r}}}
"""


def start_app() -> tuple[Any, str]:
    spec = importlib.util.spec_from_file_location("example_app", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.make_server(0)
    # A browser that closes a connection early (a favicon) is no news here.
    server.handle_error = lambda request, address: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def write_runset(directory: Path, isolation: str, flows: int) -> Path:
    text = f'[runset]\nname = "bench-{isolation}"\nbrowser_isolation = "{isolation}"\n'
    for number in range(flows):
        text += f'\n[[flows]]\nname = "flow {number:02d}"\n{STEPS}\n'
    path = directory / f"{isolation}.runset.toml"
    path.write_text(text, encoding="utf-8")
    return path


def playwright_python(option: str | None) -> str | None:
    python = option or sys.executable
    probe = [python, "-c", "import pytest_playwright, xdist"]
    if subprocess.run(probe, capture_output=True, check=False, env=bench_env()).returncode:
        where = option or f"this interpreter ({sys.executable})"
        print(
            f"note: {where} lacks pytest-playwright or pytest-xdist; pass --playwright-python "
            "(e.g. a venv with both) to compare with them"
        )
        return None
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--playwright-python", default=None, help="python with pytest-playwright")
    parser.add_argument(
        "--trace",
        default="retain-on-failure",
        choices=("retain-on-failure", "off", "on"),
        help="Playwright tracing of every contender: --runset-trace and pytest-playwright's "
        "--tracing (default: retain-on-failure, pytest-runset's default)",
    )
    parser.add_argument("extra", nargs="*", help="more pytest options for pytest-runset, after --")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from pytest_runset.gateway.runners.browser_host import CHROMIUM_FLAGS, find_system_chromium

    python = playwright_python(args.playwright_python)
    executable = find_system_chromium()
    server, base_url = start_app()
    walls: dict[str, list[float]] = {"context": [], "process": [], "playwright": []}
    reports: dict[str, list[dict[str, Any]]] = {"context": [], "process": []}
    try:
        with tempfile.TemporaryDirectory(prefix="runset-bench-browser-") as tmp:
            directory = Path(tmp)
            env = bench_env()
            pw_dir = directory / "pytest-playwright"
            pw_dir.mkdir()
            (pw_dir / "test_journeys.py").write_text(
                PLAYWRIGHT_TESTS.format(flows=args.flows), encoding="utf-8"
            )
            (pw_dir / "conftest.py").write_text(
                PLAYWRIGHT_CONFTEST.format(executable=executable, flags=list(CHROMIUM_FLAGS)),
                encoding="utf-8",
            )
            for attempt in range(args.repeat):
                for isolation in ("context", "process"):
                    runset = write_runset(directory, isolation, args.flows)
                    run_id = f"{isolation}-{attempt}"
                    command = [
                        sys.executable, "-m", "pytest", "--runset", str(runset),
                        "--runset-workers", str(args.workers), "--runset-base-url", base_url,
                        "--runset-run-id", run_id, "-p", "no:cacheprovider", "-q",
                        "--runset-trace", args.trace, *UNRELATED_PLUGINS, *args.extra,
                    ]  # fmt: skip
                    walls[isolation].append(run_timed(command, directory, env).wall_s)
                    reports[isolation].append(read_report(directory, run_id))
                if python is not None:
                    command = [
                        python, "-m", "pytest", "-q", "-n", str(args.workers), "-p", "no:runset",
                        "-p", "no:cacheprovider", *UNRELATED_PLUGINS, "--base-url", base_url,
                        "--tracing", args.trace, "test_journeys.py",
                    ]  # fmt: skip
                    walls["playwright"].append(run_timed(command, pw_dir, env).wall_s)
    finally:
        server.shutdown()
    print(
        f"P3 browser: {args.flows} journeys of 3 steps, {args.workers} workers, example app, "
        f"{executable}, tracing {args.trace}, median of {args.repeat}; {machine_line()}"
    )
    loop: dict[str, float] = {}
    for mode, label in (
        ("context", "runset, warm browser + fresh context"),
        ("process", "runset, browser per flow"),
    ):
        loop[mode] = median([report["wall_s"] for report in reports[mode]])
        flows = [flow["duration_s"] for report in reports[mode] for flow in report["flows"]]
        print(
            f"  {label:<38} wall {median(walls[mode]):6.2f}s   run wall_s {loop[mode]:6.2f}s   "
            f"mean flow {statistics.mean(flows):.3f}s"
        )
    if walls["playwright"]:
        print(
            f"  {'pytest-playwright + xdist -n ' + str(args.workers):<38} "
            f"wall {median(walls['playwright']):6.2f}s"
        )
    print(
        f"  warm vs. browser per flow: {loop['process'] / loop['context']:.2f}x faster "
        "(run wall_s; target >= 3x)"
    )
    if walls["playwright"]:
        ratio = median(walls["context"]) / median(walls["playwright"])
        print(
            f"  runset warm / pytest-playwright + xdist = {ratio:.2f}x "
            "(whole commands; target <= 1.0x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

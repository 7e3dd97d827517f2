"""Warm browser + fresh context vs. a browser per flow (not a test).

    python benchmarks/browser.py [--flows 24] [--workers 2] [--repeat 1] [-- extra pytest args]

Runs the same run-set twice against the example app: 24 browser flows of 3 steps each on 2
workers, once with the default ``browser_isolation = "context"`` (each worker launches its
browser once and gives every flow a fresh context) and once with
``browser_isolation = "process"`` (a new browser per flow). Prints the run's wall time
(``report.json``'s ``wall_s``: from the first dispatch to the last result), the mean flow
duration, and the ratio. Needs Playwright and a Chromium, like the browser tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "examples" / "app" / "app.py"

STEPS = """steps = [
  { goto = "/login" },
  { fill = "#username", value = "alice" },
  { expect_title = "Sign in - Example Shop" },
]"""


def start_app() -> tuple[Any, str]:
    spec = importlib.util.spec_from_file_location("example_app", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.make_server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def write_runset(directory: Path, isolation: str, flows: int) -> Path:
    text = f'[runset]\nname = "bench-{isolation}"\nbrowser_isolation = "{isolation}"\n'
    for number in range(flows):
        text += f'\n[[flows]]\nname = "flow {number:02d}"\n{STEPS}\n'
    path = directory / f"{isolation}.runset.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(
    directory: Path, runset: Path, run_id: str, workers: int, base_url: str, extra: list[str]
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "pytest", "--runset", str(runset), "--runset-workers", str(workers),
        "--runset-base-url", base_url, "--runset-run-id", run_id, "-p", "no:cacheprovider",
        "-q", *extra,
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    report_path = directory / "runset-results" / run_id / "report.json"
    if proc.returncode != 0 or not report_path.exists():
        sys.exit(f"{run_id} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (best is kept)")
    parser.add_argument("extra", nargs="*", help="more pytest options, after --")
    args = parser.parse_args()
    server, base_url = start_app()
    results: dict[str, list[dict[str, Any]]] = {"context": [], "process": []}
    try:
        with tempfile.TemporaryDirectory(prefix="runset-bench-") as tmp:
            directory = Path(tmp)
            for attempt in range(args.repeat):
                for isolation in ("context", "process"):
                    runset = write_runset(directory, isolation, args.flows)
                    run_id = f"{isolation}-{attempt}"
                    report = run(directory, runset, run_id, args.workers, base_url, args.extra)
                    results[isolation].append(report)
    finally:
        server.shutdown()
    best = {mode: min(reports, key=lambda r: r["wall_s"]) for mode, reports in results.items()}
    print(
        f"{args.flows} browser flows of 3 steps, {args.workers} workers, example app, "
        f"Python {sys.version.split()[0]}"
    )
    for mode, label in (
        ("context", "warm browser, fresh context"),
        ("process", "browser per flow"),
    ):
        report = best[mode]
        durations = [flow["duration_s"] for flow in report["flows"]]
        print(
            f"  {label:<28} wall {report['wall_s']:6.2f}s   "
            f"mean flow {statistics.mean(durations):.3f}s   "
            f"median flow {statistics.median(durations):.3f}s"
        )
    ratio = best["process"]["wall_s"] / best["context"]["wall_s"]
    print(f"  warm is {ratio:.1f}x faster (target: >= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

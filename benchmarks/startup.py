"""Start-up: how soon the first flow runs, and what gateways cost (not a test).

    PYTHONPATH=$PWD python benchmarks/startup.py [--repeat 5]
        [--xdist-python /path/to/bench-venv/bin/python]

Measures, median of ``--repeat`` runs each:

- ``pytest --runset`` with ``--runset-workers 4`` and one ``true`` flow: the whole command's
  wall, the time from launching the command to the flow's start (report ``started_at`` +
  the flow's ``started_s``) and the gateway start-up (the flow's ``started_s``: from the run's
  start to the flow's start, which is almost all gateway start-up);
- gateways start in parallel: start-up with 1 worker and 1 flow vs. 4 workers and 4 flows
  (the earliest and the latest first-flow start among the 4 workers): started one after
  another, the 4 first starts would spread over 4 start-ups; in parallel they come together;
- references: plain pytest running one trivial test, and pytest-xdist ``-n 4`` running one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from _bench import (
    bench_env,
    machine_line,
    median,
    read_report,
    run_timed,
    runset_command,
    write_runset,
    xdist_command,
    xdist_python,
)


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--xdist-python", default=None, help="interpreter with pytest-xdist")
    args = parser.parse_args()
    xdist = xdist_python(args.xdist_python)
    measured: dict[str, list[float]] = {
        name: []
        for name in (
            "wall",
            "to_first",
            "gateway",
            "gw1",
            "gw4",
            "gw4_first",
            "pytest",
            "xdist",
        )
    }
    with tempfile.TemporaryDirectory(prefix="runset-bench-startup-") as tmp:
        root = Path(tmp)
        one = write_runset(root / "one.runset.toml", [("only", 'command = ["true"]')])
        four = write_runset(
            root / "four.runset.toml", [(f"flow{i}", 'command = ["true"]') for i in range(4)]
        )
        (root / "test_trivial.py").write_text("def test_nothing():\n    pass\n", "utf-8")
        env = bench_env()
        common = ("-p", "no:cacheprovider")
        for attempt in range(args.repeat):
            run_id = f"one-{attempt}"
            launched = time.time()
            timed = run_timed(runset_command(one, 4, "--runset-run-id", run_id, *common), root, env)
            report = read_report(root, run_id)
            flow = report["flows"][0]
            measured["wall"].append(timed.wall_s)
            measured["gateway"].append(flow["started_s"])
            measured["to_first"].append(_epoch(report["started_at"]) + flow["started_s"] - launched)
            for workers, runset, key in ((1, one, "gw1"), (4, four, "gw4")):
                run_id = f"{key}-{attempt}"
                run_timed(
                    runset_command(runset, workers, "--runset-run-id", run_id, *common), root, env
                )
                flows = read_report(root, run_id)["flows"]
                first_per_worker: dict[str, float] = {}
                for entry in flows:
                    first = first_per_worker.get(entry["worker"], float("inf"))
                    first_per_worker[entry["worker"]] = min(first, entry["started_s"])
                measured[key].append(max(first_per_worker.values()))
                if key == "gw4":
                    measured["gw4_first"].append(min(first_per_worker.values()))
            measured["pytest"].append(
                run_timed(
                    [*runset_command(one, 1)[:3], "-q", "-p", "no:hypothesispytest", *common,
                     "test_trivial.py"],
                    root, env,
                ).wall_s
            )  # fmt: skip
            measured["xdist"].append(
                run_timed(xdist_command(xdist, 4, *common, "test_trivial.py"), root, env).wall_s
            )
    m = {name: median(values) for name, values in measured.items()}
    print(f"Start-up, median of {args.repeat}; {machine_line()}")
    print(f"  pytest --runset, 4 workers, one `true` flow: wall {m['wall']:.2f}s")
    print(f"    launch -> first flow starts      {m['to_first']:.3f}s")
    print(f"    gateway start-up (run start -> flow start) {m['gateway']:.3f}s")
    print(
        f"  gateways in parallel: 1 worker {m['gw1']:.3f}s; 4 workers: first flows start "
        f"{m['gw4_first']:.3f}s..{m['gw4']:.3f}s ({m['gw4'] / m['gw1']:.2f}x of 1 worker)"
    )
    print(
        "    serial start-up would spread the 4 first starts over ~4x one start-up; parallel "
        "start-up\n    starts all 4 together, CPU-bound (each gateway is a Python start-up)"
    )
    print(f"  reference: plain pytest, one trivial test: wall {m['pytest']:.2f}s")
    print(f"  reference: pytest-xdist -n 4, one trivial test: wall {m['xdist']:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""P2 makespan: skewed flow durations, first run vs. a run with duration history (not a test).

    PYTHONPATH=$PWD python benchmarks/makespan.py [--workers 4] [--repeat 3] [--scale 1.0]
        [--xdist-python /path/to/bench-venv/bin/python]

32 flows ``sleep`` a skewed set of durations (4 long, 28 short, fixed seed, listed in an
order where long flows come late) on 4 workers. Each repetition runs, on the same machine:

- pytest-runset with an empty cache (file order), then again with the history the first run
  recorded (longest first);
- pytest-xdist ``-n 4 --dist load`` and ``--dist worksteal`` on the same sleeps;
- a FIFO dispatcher (asyncio semaphore, file order), the floor of dispatching in file order.

The ideal makespan is ``max(longest, sum / workers)`` of the nominal sleeps. Printed per
contender: the whole command's wall and its ratio to the ideal; for pytest-runset also the
report's ``wall_s / lower_bound_s`` (target on the second run: <= 1.05). Then the shard
balance on this workload: max/min expected load of 4 shards assigned from the recorded
history (``--runset-shard``, target <= 1.1) next to a contiguous equal-count split
(Playwright's method), computed with the same durations.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from _bench import (
    REPO,
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

SEED = 20261122
FLOWS = 32

XDIST_TESTS = """
import subprocess
import pytest

DURATIONS = {durations!r}

IDS = [f"flow{{i:02d}}" for i in range(len(DURATIONS))]

@pytest.mark.parametrize("seconds", DURATIONS, ids=IDS)
def test_sleep(seconds):
    subprocess.run(["sleep", str(seconds)], check=True)
"""

FIFO_DISPATCHER = """
import asyncio, json, sys

async def one(gate, seconds):
    async with gate:
        proc = await asyncio.create_subprocess_exec("sleep", str(seconds))
        await proc.wait()

async def main(durations, workers):
    gate = asyncio.Semaphore(workers)
    await asyncio.gather(*(one(gate, seconds) for seconds in durations))

asyncio.run(main(json.loads(sys.argv[1]), int(sys.argv[2])))
"""


def skewed_durations(scale: float) -> list[float]:
    """4 long and 28 short sleeps; the long ones fall in the last quarter of the file."""
    rng = random.Random(SEED)
    short = [round(rng.uniform(0.2, 1.2) * scale, 2) for _ in range(FLOWS - 4)]
    long = [round(value * scale, 2) for value in (4.0, 3.5, 3.0, 2.5)]
    order = short[:]
    for value in long:
        order.insert(rng.randrange(len(order) * 3 // 4, len(order) + 1), value)
    return order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every sleep")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--xdist-python", default=None, help="interpreter with pytest-xdist")
    args = parser.parse_args()
    xdist = xdist_python(args.xdist_python)
    durations = skewed_durations(args.scale)
    workers = args.workers
    ideal = max(*durations, sum(durations) / workers)
    walls: dict[str, list[float]] = {
        name: [] for name in ("first", "second", "load", "worksteal", "fifo")
    }
    report_ratio: dict[str, list[float]] = {"first": [], "second": []}
    history: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="runset-bench-makespan-") as tmp:
        root = Path(tmp)
        runset = write_runset(
            root / "makespan.runset.toml",
            [(f"flow{i:02d}", f'command = ["sleep", "{d}"]') for i, d in enumerate(durations)],
        )
        (root / "test_xdist_sleep.py").write_text(
            XDIST_TESTS.format(durations=durations), encoding="utf-8"
        )
        (root / "fifo.py").write_text(FIFO_DISPATCHER, encoding="utf-8")
        env = bench_env()
        for attempt in range(args.repeat):
            cache = root / f"cache-{attempt}"
            for phase in ("first", "second"):
                run_id = f"{phase}-{attempt}"
                command = runset_command(
                    runset, workers, "--runset-run-id", run_id, "-o", f"cache_dir={cache}"
                )
                walls[phase].append(run_timed(command, root, env).wall_s)
                summary = read_report(root, run_id)
                report_ratio[phase].append(summary["wall_s"] / summary["summary"]["lower_bound_s"])
            history = json.loads((cache / "v" / "runset" / "durations").read_text())
            for dist in ("load", "worksteal"):
                command = xdist_command(
                    xdist, workers, "--dist", dist, "-p", "no:cacheprovider",
                    "test_xdist_sleep.py",
                )  # fmt: skip
                walls[dist].append(run_timed(command, root, env).wall_s)
            walls["fifo"].append(
                run_timed(
                    [sys.executable, "fifo.py", json.dumps(durations), str(workers)], root, env
                ).wall_s
            )
    print(
        f"P2 makespan: {FLOWS} sleeping flows (sum {sum(durations):.1f}s, longest "
        f"{max(durations):.1f}s), {workers} workers, ideal makespan {ideal:.2f}s, "
        f"median of {args.repeat}; {machine_line()}"
    )
    labels = {
        "first": "runset, 1st run (no history)",
        "second": "runset, 2nd run (history)",
        "load": f"xdist -n {workers} --dist load",
        "worksteal": f"xdist -n {workers} --dist worksteal",
        "fifo": "FIFO dispatcher (asyncio)",
    }
    for name, label in labels.items():
        wall = median(walls[name])
        line = f"  {label:<34} wall {wall:6.2f}s  = {wall / ideal:.2f}x ideal"
        if name in report_ratio:
            line += f"   report wall_s/lower_bound_s = {median(report_ratio[name]):.3f}"
        print(line)
    print("    (target: 2nd run report wall_s/lower_bound_s <= 1.05)")
    _print_shards(history, args.shards)
    return 0


def _print_shards(raw_history: dict[str, Any], count: int) -> None:
    sys.path.insert(0, str(REPO))
    from pytest_runset.session.history import clean, estimate
    from pytest_runset.session.shards import assign_shards, contiguous_shards, shard_loads

    history = {key: estimate(samples) for key, samples in clean(raw_history).items()}
    keys = sorted(history)  # node ids of flowNN sort in file order
    balanced = shard_loads(assign_shards(keys, count, history), count, history)
    contiguous = shard_loads(contiguous_shards(keys, count), count, history)
    print(f"  shards of this workload from the recorded history, {count} shards:")
    for label, loads in (("--runset-shard (history)", balanced), ("contiguous split", contiguous)):
        shown = " ".join(f"{load:5.2f}" for load in loads)
        print(
            f"    {label:<26} loads [{shown}]s  max/min = {max(loads) / min(loads):.2f}"
            + ("  (target <= 1.10)" if "history" in label else "")
        )


if __name__ == "__main__":
    raise SystemExit(main())

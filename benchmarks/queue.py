"""Coordinated runs: one shared queue vs. static shards on uneven runners (not a test).

    PYTHONPATH=$PWD python benchmarks/queue.py [--repeat 1] [--scale 1.0]

A CI matrix of 3 runners x 2 workers runs 60 flows of skewed sleeps (6 long, 54 short, fixed
seed). The runners are uneven, as CI runners are: the second starts 5 s late, the third is
throttled to half speed (``nice``d, and its flows take twice as long: ``SLOW=2``). Measured
side by side on the same machine, against one throwaway redis-server on 127.0.0.1:

- the shared queue (``--runset-coordinator`` + ``--runset-queue``), seeded longest first from
  the duration history;
- static shards (``--runset-shard K/3``) balanced by the same history, the best a static split
  can do when it does not know which runner will be late or slow.

The capacity bound is the earliest time at which the runners' combined capacity (workers x
speed x time since their start) covers the total work, and at least the longest flow: no
dispatcher can finish earlier. Printed: each makespan (first start to last exit, interpreter
start-ups included), its ratio to the bound (target for the queue: within 1.15x) and the
shards' makespan over the queue's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import bench_env, machine_line, median, runset_command, write_runset

SEED = 20261203
FLOWS = 60
WORKERS = 2
# (start delay in seconds, speed) of each runner.
RUNNERS = ((0.0, 1.0), (5.0, 1.0), (0.0, 0.5))
REDIS = "/usr/bin/redis-server"

FLOW = "import os, sys, time; time.sleep(float(sys.argv[1]) * float(os.environ.get('SLOW', '1')))"


def skewed_durations(scale: float) -> list[float]:
    rng = random.Random(SEED)
    durations = [round(rng.uniform(0.2, 1.2) * scale, 2) for _ in range(FLOWS - 6)]
    for value in (4.0, 3.6, 3.2, 3.0, 2.8, 2.5):
        durations.insert(rng.randrange(len(durations) + 1), round(value * scale, 2))
    return durations


def capacity_bound(
    durations: list[float], starts: list[float] | None = None, work: float | None = None
) -> float:
    """The earliest T with sum(workers * speed * max(0, T - start)) >= total work (the sum of
    ``durations``, or ``work``)."""
    work = sum(durations) if work is None else work
    runners = [
        (start if starts is None else starts[index], speed)
        for index, (start, speed) in enumerate(RUNNERS)
    ]
    low, high = 0.0, work + max(start for start, _ in runners) + 1
    for _ in range(60):
        middle = (low + high) / 2
        capacity = sum(WORKERS * speed * max(0.0, middle - start) for start, speed in runners)
        low, high = (middle, high) if capacity < work else (low, middle)
    return max(high, *durations)


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def run_matrix(root: Path, runset: Path, cache: Path, per_runner: list[list[str]]) -> float:
    """Start the runners (with their delays and speeds); seconds from first start to last exit."""
    started = time.perf_counter()
    processes: list[subprocess.Popen[str]] = []
    # In the order of their start delays: a runner listed after a late one must not wait for
    # it (the half-speed runner starts at once, as the capacity bound assumes).
    for index in sorted(range(len(RUNNERS)), key=lambda index: RUNNERS[index][0]):
        (delay, speed), extra = RUNNERS[index], per_runner[index]
        wait = started + delay - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        env = bench_env({"SLOW": str(1 / speed), "RUNSET_LOCK_DIR": str(root / f"locks-{index}")})
        (root / f"locks-{index}").mkdir(mode=0o700, exist_ok=True)
        command = runset_command(
            runset, WORKERS, "-o", f"cache_dir={cache}", "-p", "no:xdist",
            "--runset-output", str(root / f"out-{index}"), *extra,
        )  # fmt: skip
        if speed < 1:
            command = ["nice", "-n", "19", *command]
        processes.append(
            subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
        )
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            sys.exit(f"a runner failed (exit {process.returncode}):\n{out[-3000:]}")
    return time.perf_counter() - started


def inside_pytest(root: Path, durations: list[float]) -> tuple[float, float]:
    """The reports' makespan (first session's start to last report, interpreter start-ups
    and exits left out) over the capacity bound from the sessions' actual starts: of the
    nominal sleeps, and of the flows' measured durations (each flow's process start-up
    included, at its runner's speed), which leaves only the dispatch's own losses."""
    reports = [
        json.loads((root / f"out-{index}" / "latest" / "report.json").read_text())
        for index in range(len(RUNNERS))
    ]
    starts = [iso(report["started_at"]) for report in reports]
    first = min(starts)
    relative = [start - first for start in starts]
    makespan = max(iso(report["finished_at"]) for report in reports) - first
    measured = sum(
        flow["duration_s"] * speed
        for report, (_, speed) in zip(reports, RUNNERS, strict=True)
        for flow in report["flows"]
    )
    return (
        makespan / capacity_bound(durations, relative),
        makespan / capacity_bound(durations, relative, measured),
    )


def iso(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (median)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every sleep")
    args = parser.parse_args()
    if not os.path.exists(REDIS) or shutil.which("nice") is None:
        sys.exit(f"needs {REDIS} and nice")
    durations = skewed_durations(args.scale)
    bound = capacity_bound(durations)
    queue_walls: list[float] = []
    shard_walls: list[float] = []
    inside: dict[str, list[tuple[float, float]]] = {"queue": [], "shards": []}
    with tempfile.TemporaryDirectory(prefix="runset-bench-queue-") as tmp:
        root = Path(tmp)
        (root / "flow.py").write_text(FLOW, encoding="utf-8")
        python = json.dumps(sys.executable)
        runset = write_runset(
            root / "queue.runset.toml",
            [
                (f"flow{i:02d}", f'command = [{python}, "flow.py", "{d}"]')
                for i, d in enumerate(durations)
            ],
        )
        server, url = start_redis(root)
        try:
            cache = root / "cache"
            # One plain run teaches the history that both contenders then use.
            subprocess.run(
                runset_command(runset, 6, "-o", f"cache_dir={cache}", "-p", "no:xdist"),
                cwd=root, env=bench_env(), capture_output=True, check=True,
            )  # fmt: skip
            for attempt in range(args.repeat):
                queue = ["--runset-coordinator", url, "--runset-queue", f"bench-{attempt}"]
                queue_walls.append(run_matrix(root, runset, cache, [queue] * len(RUNNERS)))
                inside["queue"].append(inside_pytest(root, durations))
                shards = [[f"--runset-shard={k}/{len(RUNNERS)}"] for k in (1, 2, 3)]
                shard_walls.append(run_matrix(root, runset, cache, shards))
                inside["shards"].append(inside_pytest(root, durations))
        finally:
            server.kill()
            server.wait()
    queue_wall, shard_wall = median(queue_walls), median(shard_walls)
    print(
        f"coordinated queue: {FLOWS} sleeping flows (sum {sum(durations):.1f}s, longest "
        f"{max(durations):.1f}s), {len(RUNNERS)} runners x {WORKERS} workers (one 5 s late, "
        f"one at half speed), capacity bound {bound:.2f}s; {machine_line()}"
    )
    for name, key, wall in (
        ("shared queue ", "queue", queue_wall),
        ("static shards", "shards", shard_wall),
    ):
        nominal = median([ratio for ratio, _ in inside[key]])
        measured = median([ratio for _, ratio in inside[key]])
        print(
            f"  {name}   makespan {wall:6.2f}s  {wall / bound:.2f}x bound (whole commands), "
            f"inside pytest {nominal:.2f}x bound, {measured:.2f}x the bound of measured flows"
        )
    print(f"  shards / queue  {shard_wall / queue_wall:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

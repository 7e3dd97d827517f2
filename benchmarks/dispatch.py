"""P1 dispatch: many trivial flows, pytest-runset vs. xdist, xargs and asyncio (not a test).

    PYTHONPATH=$PWD python benchmarks/dispatch.py [--flows 400] [--workers 4] [--repeat 3]
        [--xdist-python /path/to/bench-venv/bin/python]

Runs 400 command flows of ``true`` on 4 workers and, on the same machine in the same
invocation, the same work done by:

- pytest-xdist ``-n 4``: 400 parametrized tests that each ``subprocess.run(["true"])``;
- ``xargs -P 4``: the floor of spawning 400 processes 4 at a time;
- an asyncio dispatcher: one ``asyncio.create_subprocess_exec`` per flow behind a semaphore.

Every wall time is the whole command, interpreter start-up included, median of ``--repeat``.
Prints each wall, pytest-runset's ratio to xdist (target <= 0.8x), its excess over xargs
(target <= 1.5 s) and the per-flow overhead: (runset wall - xargs wall) / flows.

The containment tiers side by side: pytest-runset runs once per tier (``cgroup`` where this
host allows it, and ``process-group``); the difference per flow is what a cgroup per attempt
costs (target <= 1 ms per flow).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _bench import (
    bench_env,
    machine_line,
    median,
    ratio,
    run_timed,
    runset_command,
    write_runset,
    xdist_command,
    xdist_python,
)

from pytest_runset.gateway.containment import resolve

XDIST_TESTS = """
import subprocess
import pytest

@pytest.mark.parametrize("number", range({flows}))
def test_true(number):
    subprocess.run(["true"], check=True)
"""

ASYNCIO_DISPATCHER = """
import asyncio, sys

async def one(gate):
    async with gate:
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()

async def main(flows, workers):
    gate = asyncio.Semaphore(workers)
    await asyncio.gather(*(one(gate) for _ in range(flows)))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--xdist-python", default=None, help="interpreter with pytest-xdist")
    args = parser.parse_args()
    xdist = xdist_python(args.xdist_python)
    n, w = args.flows, args.workers
    walls: dict[str, list[float]] = {
        "runset": [],
        "runset-pg": [],
        "xdist": [],
        "xargs": [],
        "asyncio": [],
    }
    inner: list[float] = []
    with tempfile.TemporaryDirectory(prefix="runset-bench-dispatch-") as tmp:
        root = Path(tmp)
        runset = write_runset(
            root / "dispatch.runset.toml",
            [(f"true {i:05d}", 'command = ["true"]') for i in range(n)],
        )
        (root / "test_xdist_true.py").write_text(XDIST_TESTS.format(flows=n), encoding="utf-8")
        (root / "dispatcher.py").write_text(ASYNCIO_DISPATCHER, encoding="utf-8")
        env = bench_env()
        for _ in range(args.repeat):
            # Interleaved, so that a burst of load elsewhere hits every contender alike.
            timed = run_timed(runset_command(runset, w), root, env)
            walls["runset"].append(timed.wall_s)
            inner.append(_report_wall(timed.stdout))
            process_group = runset_command(runset, w, "--runset-containment", "process-group")
            walls["runset-pg"].append(run_timed(process_group, root, env).wall_s)
            walls["xdist"].append(
                run_timed(xdist_command(xdist, w, "test_xdist_true.py"), root, env).wall_s
            )
            walls["xargs"].append(
                run_timed(["bash", "-c", f"seq {n} | xargs -P {w} -n 1 true"], root, env).wall_s
            )
            walls["asyncio"].append(
                run_timed([sys.executable, "dispatcher.py", str(n), str(w)], root, env).wall_s
            )
    wall = {name: median(values) for name, values in walls.items()}
    tier = "cgroup" if resolve("auto")[0] == "cgroup" else "auto: process-group here"
    print(
        f"P1 dispatch: {n} flows of `true`, {w} workers, median of {args.repeat}; {machine_line()}"
    )
    labels = {
        "runset": f"pytest-runset ({tier})",
        "runset-pg": "pytest-runset (process-group)",
        "xdist": f"pytest-xdist -n {w}",
        "xargs": f"xargs -P {w}",
        "asyncio": "asyncio + semaphore",
    }
    for name, label in labels.items():
        shown = ratio(wall[name], wall["runset"])
        print(f"  {label:<22} wall {wall[name]:6.2f}s   ({shown} of runset)")
    per_flow_ms = (wall["runset"] - wall["xargs"]) * 1000 / n
    print(f"  runset loop wall (report.json wall_s): {median(inner):.2f}s")
    print(
        f"  runset / xdist = {ratio(wall['runset'], wall['xdist'])} (target <= 0.80x); "
        f"runset - xargs = {wall['runset'] - wall['xargs']:+.2f}s (target <= +1.50s)"
    )
    print(f"  per-flow overhead over xargs: {per_flow_ms:.2f} ms")
    tier_ms = (wall["runset"] - wall["runset-pg"]) * 1000 / n
    print(f"  {tier} tier vs process-group: {tier_ms:+.2f} ms per flow (target <= +1.00 ms)")
    return 0


def _report_wall(stdout: str) -> float:
    """The wall time pytest-runset's summary line printed (`... in 1.23s on 4 workers`)."""
    for line in stdout.splitlines():
        if line.startswith("runset ") and " in " in line:
            try:
                return float(line.split(" in ", 1)[1].split("s on", 1)[0])
            except ValueError:
                break
    return float("nan")


if __name__ == "__main__":
    raise SystemExit(main())

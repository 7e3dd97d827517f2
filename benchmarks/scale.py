"""P4 scale: 1,000 and 10,000 trivial flows, controller memory and time (not a test).

    PYTHONPATH=$PWD python benchmarks/scale.py [--sizes 1000 10000] [--workers 4] [--repeat 3]

For each size, a run-set of ``true`` flows runs on 4 workers. Printed per size (median of
``--repeat``): the whole command's wall, the run loop's wall (``report.json`` ``wall_s``),
the controller's peak RSS (``VmHWM`` from ``/proc/self/status`` of the pytest process, read
in ``pytest_unconfigure`` by the generated project's conftest; gateways and flows are other
processes and do not count) and the ``--collect-only`` wall. Then the targets:
controller peak RSS <= 300 MB at the largest size, time(largest)/time(smallest) <= 11 for a
10x size step (the command's wall), and collection of the largest <= 2 s.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _bench import (
    PEAK_RSS_CONFTEST,
    bench_env,
    machine_line,
    median,
    read_report,
    run_timed,
    runset_command,
    write_runset,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median)")
    args = parser.parse_args()
    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="runset-bench-scale-") as tmp:
        root = Path(tmp)
        (root / "conftest.py").write_text(PEAK_RSS_CONFTEST, encoding="utf-8")
        peak_file = root / "peak-rss-kb"
        env = bench_env({"BENCH_PEAK_RSS_FILE": str(peak_file)})
        for size in args.sizes:
            runset = write_runset(
                root / f"scale-{size}.runset.toml",
                [(f"true {i:06d}", 'command = ["true"]') for i in range(size)],
            )
            samples: dict[str, list[float]] = {"wall": [], "loop": [], "rss": [], "collect": []}
            for attempt in range(args.repeat):
                collect = runset_command(runset, args.workers, "--collect-only", "-q")
                samples["collect"].append(run_timed(collect, root, env).wall_s)
                run_id = f"scale-{size}-{attempt}"
                command = runset_command(
                    runset, args.workers, "--runset-run-id", run_id, "-p", "no:cacheprovider"
                )
                peak_file.unlink(missing_ok=True)
                samples["wall"].append(run_timed(command, root, env).wall_s)
                samples["loop"].append(read_report(root, run_id)["wall_s"])
                samples["rss"].append(int(peak_file.read_text()) / 1024)
            rows[size] = {name: median(values) for name, values in samples.items()}
    print(
        f"P4 scale: `true` flows, {args.workers} workers, median of {args.repeat}; {machine_line()}"
    )
    for size, row in rows.items():
        print(
            f"  {size:>6} flows: wall {row['wall']:7.2f}s  loop {row['loop']:7.2f}s "
            f"({row['loop'] * 1000 / size:.2f} ms/flow)  controller peak RSS "
            f"{row['rss']:6.1f} MB  --collect-only {row['collect']:5.2f}s"
        )
    small, large = min(rows), max(rows)
    if small != large:
        print(
            f"  time({large})/time({small}) = {rows[large]['wall'] / rows[small]['wall']:.2f} "
            f"(target <= {11 * large / small / 10:g}); loop only: "
            f"{rows[large]['loop'] / rows[small]['loop']:.2f}"
        )
    print(
        f"  peak RSS at {large}: {rows[large]['rss']:.1f} MB (target <= 300 MB); "
        f"collection of {large}: {rows[large]['collect']:.2f}s (target <= 2 s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Collecting a matrix: 3,000 and 30,000 flows from one ``matrix`` table, and the same flows
written out as hand-written tables (not a test).

    PYTHONPATH=$PWD python benchmarks/matrix_collect.py [--sizes 3000 30000] [--repeat 3]

Each size is an evaluation grid: 5 variants x N/15 tasks x 3 seeds, with the variant, task and
seed in the name, the command, a tag and the environment. Printed per size (median of
``--repeat``): the wall of ``pytest --collect-only`` for the matrix and for the hand-written
file, and the load alone (``load_runset``, timed inside a fresh interpreter). Then the targets:
collection stays linear, time(largest)/time(smallest) <= 11 for a 10x size step, and the
matrix costs at most 1.2x the hand-written tables of the same flows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _bench import machine_line, median, ratio, run_timed, runset_command

VARIANTS = ("greedy", "annealing", "beam", "random", "agent")
SEEDS = (1, 2, 3)
COMMAND = '["{python}", "trial.py", "--variant", "%s", "--task", "%s", "--seed", "%s"]'


def matrix_file(path: Path, size: int) -> Path:
    tasks = size // (len(VARIANTS) * len(SEEDS))
    variants = ", ".join(f'"{v}"' for v in VARIANTS)
    path.write_text(
        '[runset]\nname = "eval"\n\n[[flows]]\n'
        'name = "{matrix.variant} task {matrix.task} seed {matrix.seed}"\n'
        f"command = {COMMAND % ('{matrix.variant}', '{matrix.task}', '{matrix.seed}')}\n"
        'tags = ["v_{matrix.variant}"]\n'
        'env = { TASK = "{matrix.task}" }\n'
        f"matrix = {{ variant = [{variants}], task = {{ range = [0, {tasks}] }}, "
        f"seed = {list(SEEDS)} }}\n",
        encoding="utf-8",
    )
    return path


def written_out_file(path: Path, size: int) -> Path:
    """The same flows as the matrix, one table each (what users wrote before matrices)."""
    tasks = size // (len(VARIANTS) * len(SEEDS))
    parts = ['[runset]\nname = "eval"\n']
    for variant in VARIANTS:
        for task in range(tasks):
            for seed in SEEDS:
                parts.append(
                    f'\n[[flows]]\nname = "{variant} task {task} seed {seed}"\n'
                    f"command = {COMMAND % (variant, task, seed)}\n"
                    f'tags = ["v_{variant}"]\n'
                    f'env = {{ TASK = "{task}", RUNSET_MATRIX_VARIANT = "{variant}", '
                    f'RUNSET_MATRIX_TASK = "{task}", RUNSET_MATRIX_SEED = "{seed}" }}\n'
                )
    path.write_text("".join(parts), encoding="utf-8")
    return path


# The load alone, timed inside a fresh interpreter (one process's heap would grow run by run).
LOAD = """
import sys, time
from pytest_runset.model.loader import load_runset
started = time.perf_counter()
load_runset(sys.argv[1])
print(time.perf_counter() - started)
"""


def load_seconds(path: Path) -> float:
    return float(run_timed([sys.executable, "-c", LOAD, str(path)], path.parent).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median)")
    args = parser.parse_args()
    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="runset-bench-matrix-") as tmp:
        root = Path(tmp)
        for size in args.sizes:
            files = {
                "matrix": matrix_file(root / f"matrix-{size}.runset.toml", size),
                "written": written_out_file(root / f"written-{size}.runset.toml", size),
            }
            samples: dict[str, list[float]] = {name: [] for name in files}
            samples |= {f"load {name}": [] for name in files}
            for _ in range(args.repeat):
                for name, path in files.items():  # interleaved, so load hits both alike
                    command = runset_command(path, 1, "--collect-only", "-p", "no:cacheprovider")
                    samples[name].append(run_timed(command, root).wall_s)
                    samples[f"load {name}"].append(load_seconds(path))
            rows[size] = {name: median(values) for name, values in samples.items()}
    print(f"matrix collection, median of {args.repeat}; {machine_line()}")
    for size, row in rows.items():
        print(
            f"  {size:>6} flows: --collect-only matrix {row['matrix']:6.2f}s, "
            f"hand-written {row['written']:6.2f}s ({ratio(row['matrix'], row['written'])}); "
            f"load alone matrix {row['load matrix']:5.2f}s, "
            f"hand-written {row['load written']:5.2f}s "
            f"({ratio(row['load matrix'], row['load written'])})"
        )
    small, large = min(rows), max(rows)
    if small != large:
        growth = ratio(rows[large]["matrix"], rows[small]["matrix"])
        print(
            f"  time({large})/time({small}): collection {growth} "
            f"(target <= {11 * large / small / 10:g}), load alone "
            f"{ratio(rows[large]['load matrix'], rows[small]['load matrix'])}"
        )
    print(
        f"  matrix / hand-written at {large}: "
        f"{ratio(rows[large]['matrix'], rows[large]['written'])} (target <= 1.2x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

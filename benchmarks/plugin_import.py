"""Plugin import: what pytest-runset costs a pytest session that collects no run-set (not a test).

    PYTHONPATH=$PWD python benchmarks/plugin_import.py [--repeat 15]

pytest loads every installed plugin into every session: pytest-runset (the ``pytest11`` entry
point ``runset``) is loaded by test suites that have no run-set at all. In a temporary
directory holding one trivial test file, this runs ``python -m pytest --co -q -p
no:cacheprovider`` (and ``_bench.UNRELATED_PLUGINS``) with the plugin, and the same with ``-p
no:runset``, interleaved (which of the two goes first alternates), ``--repeat`` times each after
one unmeasured warm-up run of each. Printed: the median wall of each, their difference in ms,
and PASS/FAIL against the target: the plugin adds at most 15 ms.

Before measuring, ``--help`` of both commands is checked: with the plugin it lists
``--runset``, without it it does not (else the two commands would measure the same thing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _bench import UNRELATED_PLUGINS, bench_env, machine_line, median, run_timed

TARGET_MS = 15.0
WITHOUT_PLUGIN = ("-p", "no:runset")


def pytest_command(*extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
        *UNRELATED_PLUGINS, *extra,
    ]  # fmt: skip


def check_plugin_loads(root: Path, env: dict[str, str]) -> None:
    """The entry point loads the plugin, and ``-p no:runset`` keeps it out."""
    with_help = run_timed(pytest_command("--help"), root, env).stdout
    without_help = run_timed(pytest_command(*WITHOUT_PLUGIN, "--help"), root, env).stdout
    if "--runset" not in with_help:
        sys.exit(
            "pytest did not load pytest-runset through its `pytest11` entry point: install the "
            'checkout (pip install -e ".[dev]") so that the entry point exists'
        )
    if "--runset" in without_help:
        sys.exit("`-p no:runset` did not keep pytest-runset out (is it loaded another way?)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per command (median)")
    args = parser.parse_args()
    measured: dict[str, list[float]] = {"with": [], "without": []}
    commands = {
        "with": pytest_command("test_trivial.py"),
        "without": pytest_command(*WITHOUT_PLUGIN, "test_trivial.py"),
    }
    with tempfile.TemporaryDirectory(prefix="runset-bench-plugin-import-") as tmp:
        root = Path(tmp)
        (root / "test_trivial.py").write_text("def test_nothing():\n    pass\n", "utf-8")
        env = bench_env()
        check_plugin_loads(root, env)
        for command in commands.values():
            run_timed(command, root, env)  # warm-up: byte-code written, files in the page cache
        for attempt in range(args.repeat):
            order = ("with", "without") if attempt % 2 == 0 else ("without", "with")
            for name in order:
                measured[name].append(run_timed(commands[name], root, env).wall_s)
    with_s, without_s = median(measured["with"]), median(measured["without"])
    cost_ms = (with_s - without_s) * 1000
    verdict = "PASS" if cost_ms <= TARGET_MS else "FAIL"
    print(
        f"Plugin import: pytest --co of one trivial test, no run-set, median of {args.repeat} "
        f"(interleaved); {machine_line()}"
    )
    print(f"  with pytest-runset (entry point)   wall {with_s * 1000:7.1f} ms")
    print(f"  with -p no:runset                  wall {without_s * 1000:7.1f} ms")
    print(f"  the plugin costs {cost_ms:+.1f} ms (target <= {TARGET_MS:.0f} ms): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

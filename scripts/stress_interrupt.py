"""Stress: Ctrl-C a real run at random moments, N times, and check what is left behind.

    python scripts/stress_interrupt.py --trials 50 [--seed 1]

Each trial starts `pytest --runset` on a run-set of quick flows, a process-tree flow and a
long flow, sends SIGINT at a random moment after the run directory appears, and checks: exit
code 2, a valid report.json listing every flow with a known status, and no process carrying
the run's cookie 5 seconds later. Prints one line per trial and a summary; exits 1 on any
failure. (The test suite runs 10 such trials; this script is for longer soaks.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TREE = r"""
import os, subprocess, sys, time
subprocess.Popen(["sleep", "600"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
time.sleep(600)
"""
STATUSES = {"passed", "failed", "error", "timeout", "skipped", "xfailed", "xpassed",
            "interrupted", "not_run"}  # fmt: skip


def cookie_processes(prefix: str) -> list[int]:
    needle = f"RUNSET_FLOW_ID={prefix}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if any(v.startswith(needle) for v in handle.read().split(b"\0")):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def trial(workdir: Path, index: int, delay: float) -> str | None:
    run_id = f"stress{index}"
    run_dir = workdir / "runset-results" / run_id
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--runset", "run-set.toml", "--runset-run-id", run_id,
         "-p", "no:cacheprovider", "-q"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (run_dir / "journal.jsonl").exists():
        if time.monotonic() > deadline:
            proc.kill()
            return "run directory never appeared"
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 2:
        return f"exit code {proc.returncode}: {out.decode(errors='replace')[-500:]}"
    try:
        report = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return f"no valid report.json: {exc}"
    if len(report["flows"]) != report["summary"]["total"] or report["summary"]["total"] != 14:
        return f"flows missing from the report: {len(report['flows'])}"
    if any(flow["status"] not in STATUSES for flow in report["flows"]):
        return "unknown status in the report"
    if b"Traceback" in out:
        return "traceback in the output"
    time.sleep(5)
    left = cookie_processes(f"{run_id}.")
    if left:
        return f"processes survived: {left}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=2.5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="runset-stress-") as tmp:
        workdir = Path(tmp)
        (workdir / "tree.py").write_text(TREE)
        flows = "".join(
            f'[[flows]]\nname = "quick {i}"\ncommand = ["sleep", "0.{i}"]\n' for i in range(1, 9)
        )
        flows += f'[[flows]]\nname = "tree"\ncommand = [{sys.executable!r}, "tree.py"]\n'
        flows += '[[flows]]\nname = "long"\ncommand = ["sleep", "600"]\n'
        flows += "".join(f'[[flows]]\nname = "tail {i}"\ncommand = ["true"]\n' for i in range(4))
        (workdir / "run-set.toml").write_text("[runset]\nconcurrency = 3\nkill_grace = 1\n" + flows)
        for index in range(args.trials):
            delay = rng.uniform(0.0, args.max_delay)
            problem = trial(workdir, index, delay)
            failures += problem is not None
            print(f"trial {index:3d} delay {delay:4.2f}s: {problem or 'ok'}", flush=True)
    print(f"{args.trials - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Persona sign-in: once per run (``login`` on the persona) vs. inside every flow (not a test).

    PYTHONPATH=$PWD python benchmarks/persona_login.py [--flows 12] [--workers 2] [--repeat 3]
        [--signin-delay 0.3]

The same journeys (open ``/home`` signed in, check the greeting) of one persona against
tests/signin_app.py, whose sign-in takes ``--signin-delay`` seconds (like a password hash), on
``--workers`` workers, median of ``--repeat`` runs each:

- ``reuse``: the persona has ``login = { steps = [...] }``: the first flow signs in, every other
  flow starts from the saved storage state;
- ``every flow``: no ``login``; each flow's steps sign in first, then open ``/home``.

Prints each contender's run wall (``report.json``'s ``wall_s``), the mean flow duration, the
app's count of sign-ins, and the ratio (target: reuse >= 1.5x faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _bench import REPO, UNRELATED_PLUGINS, bench_env, machine_line, median, read_report, run_timed

SIGN_IN_STEPS = """
  { goto = "/login" },
  { fill = "#user", value = "{persona.user}" },
  { fill = "#password", value = "{persona.password}" },
  { click = "#go" },
  { expect_text = "h1", text = "Welcome, alice" },"""

JOURNEY = """
  { goto = "/home" },
  { expect_text = "h1", text = "Welcome, alice" },"""


def write_runset(directory: Path, mode: str, flows: int) -> Path:
    persona = '[personas.alice]\nuser = "alice"\npassword_env = "BENCH_PASSWORD"\n'
    if mode == "reuse":
        persona += f"login = {{ steps = [{SIGN_IN_STEPS}\n] }}\n"
        steps = f"steps = [{JOURNEY}\n]"
    else:
        steps = f"steps = [{SIGN_IN_STEPS}{JOURNEY}\n]"
    parts = ['[runset]\nname = "bench"\ntimeout = "10m"\n', persona]
    for number in range(1, flows + 1):
        parts.append(f'\n[[flows]]\nname = "home {number}"\npersona = "alice"\n{steps}\n')
    path = directory / f"{mode.replace(' ', '-')}.toml"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--signin-delay", type=float, default=0.3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from signin_app import PASSWORD, serve

    served = serve(args.signin_delay)
    base_url, app = next(served)
    reports: dict[str, list[dict[str, Any]]] = {"reuse": [], "every flow": []}
    signins: dict[str, list[int]] = {"reuse": [], "every flow": []}
    try:
        with tempfile.TemporaryDirectory(prefix="runset-bench-login-") as tmp:
            directory = Path(tmp)
            env = bench_env({"BENCH_PASSWORD": PASSWORD})
            for attempt in range(args.repeat):
                for mode in ("reuse", "every flow"):
                    runset = write_runset(directory, mode, args.flows)
                    run_id = f"{mode.replace(' ', '-')}-{attempt}"
                    before = app.signins
                    command = [
                        sys.executable, "-m", "pytest", "--runset", str(runset),
                        "--runset-workers", str(args.workers), "--runset-base-url", base_url,
                        "--runset-run-id", run_id, "-p", "no:cacheprovider", "-q",
                        *UNRELATED_PLUGINS,
                    ]  # fmt: skip
                    run_timed(command, directory, env)
                    reports[mode].append(read_report(directory, run_id))
                    signins[mode].append(app.signins - before)
    finally:
        served.close()
    print(
        f"persona sign-in: {args.flows} journeys of one persona, {args.workers} workers, "
        f"sign-in {args.signin_delay}s, median of {args.repeat}; {machine_line()}"
    )
    walls: dict[str, float] = {}
    for mode in ("reuse", "every flow"):
        walls[mode] = median([report["wall_s"] for report in reports[mode]])
        flows = [flow["duration_s"] for report in reports[mode] for flow in report["flows"]]
        print(
            f"  {mode:<11} run wall_s {walls[mode]:6.2f}s   mean flow {statistics.mean(flows):.3f}s"
            f"   sign-ins per run {median([float(n) for n in signins[mode]]):.0f}"
        )
    print(
        f"  reuse vs. signing in every flow: {walls['every flow'] / walls['reuse']:.2f}x faster "
        "(run wall_s; target >= 1.5x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

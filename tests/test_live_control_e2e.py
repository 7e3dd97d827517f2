"""Live control of a run from another terminal, end to end with real processes (DESIGN
"Containment, resources and live control").

What this proves:

- ``pytest-runset pause`` freezes a running flow (it writes nothing while paused), the time
  paused counts toward no timeout, and the report says how long the run was paused;
- ``pytest-runset stop --drain`` lets the running flow pass and leaves queued flows
  ``not_run`` (exit 2); ``pytest-runset stop`` ends the run as Ctrl-C does;
- ``pytest-runset status`` lists the running flows of a live run and prints the final
  summary of a finished one; ``pause`` on a finished run is a one-line usage error;
- Ctrl-Z (SIGTSTP) pauses the flows and stops pytest (``status`` says the run is paused),
  SIGCONT carries on: the flow passes and is not taken for an unresponsive worker; nor are
  flows that finished while pytest itself was SIGSTOPped for longer than their timeout and
  backstop margin.

Flows write monotonic timestamps (one clock for every process of the host), so what was
written while paused is read from the flow's own log, never from wall-time bounds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report, processes_with_cookie_prefix, wait_for

PYTHON = sys.executable
# Writes a monotonic timestamp every 0.5 s, TICKS times (about TICKS / 2 seconds of work),
# after an optional "started" file. argv: ticks.
TICK_PY = r"""
import os, sys, time
from pathlib import Path
Path(os.environ["RUNSET_FLOW_DIR"], "started").write_text("")
for _ in range(int(sys.argv[1])):
    print(time.monotonic(), flush=True)
    time.sleep(0.5)
"""
# Waits for the file named by argv[1] (bounded), then passes.
WAIT_PY = r"""
import os, sys, time
from pathlib import Path
Path(os.environ["RUNSET_FLOW_DIR"], "started").write_text("")
deadline = time.monotonic() + 120
while not Path(sys.argv[1]).exists() and time.monotonic() < deadline:
    time.sleep(0.05)
"""
# How long the workers may take to freeze their flows once the controller has told them.
SETTLE_S = 1.0


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lock_dir = tmp_path / "locks"
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(lock_dir))
    return lock_dir


@pytest.fixture
def scripts(pytester: pytest.Pytester) -> None:
    (pytester.path / "tick.py").write_text(TICK_PY, encoding="utf-8")
    (pytester.path / "wait.py").write_text(WAIT_PY, encoding="utf-8")


def control(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``pytest-runset ARGV`` (the console script), as a user runs it in another terminal."""
    scripts_dir = sysconfig.get_path("scripts")
    found = shutil.which("pytest-runset", path=os.pathsep.join([scripts_dir, os.environ["PATH"]]))
    command = [found] if found else [PYTHON, "-m", "pytest_runset.cli"]
    return subprocess.run(
        [*command, *argv], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def ticks(log: Path) -> list[float]:
    try:
        text = log.read_text()
    except OSError:
        return []
    return [float(line) for line in text.split("\n")[:-1] if line.strip()]


def proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "?"
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3].decode()


def output_of(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=60)
    return out.decode(errors="replace")


def finish(proc: subprocess.Popen[bytes]) -> str:
    out, _ = proc.communicate(timeout=120)
    return out.decode(errors="replace")


@pytest.mark.parametrize("tier", ["cgroup", "process-group"])
def test_pause_freezes_a_flow_and_paused_time_counts_toward_no_timeout(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    scripts: None,
    tier: str,
) -> None:
    # 6 s of work under a 9 s timeout, paused for 7 s: it passes only if the pause counts
    # toward none of the flow's timeout, the backstop (9 + 1 + 1 s) and the global timeout
    # (11 s), and the flow writes nothing while it is paused.
    write_runset(
        f'[[flows]]\nname = "ticks"\ncommand = ["{PYTHON}", "tick.py", "12"]\n'
        "timeout = 9\nkill_grace = 1\n"
    )
    run_dir = pytester.path / "runset-results" / "p"
    log = run_dir / "ticks" / "stdout.log"
    proc = spawn_pytest(
        "--runset", "run-set.toml", "--runset-run-id", "p", "--runset-containment", tier,
        "-o", "runset_backstop_margin=1", "--runset-global-timeout", "11",
    )  # fmt: skip
    assert wait_for(lambda: len(ticks(log)) >= 2, 60), output_of(proc)
    paused = control(pytester.path, "pause", "p", "--output", "runset-results")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "run p: pausing"
    paused_at = time.monotonic()
    # The run says it is paused once it has told the workers to freeze their flows.
    assert wait_for(
        lambda: (
            "run p: paused"
            in control(pytester.path, "status", "p", "--output", "runset-results").stdout
        ),
        10,
    ), control(pytester.path, "status", "latest").stdout
    frozen_at = time.monotonic()
    time.sleep(max(0.0, paused_at + 7.0 - time.monotonic()))
    unpaused_at = time.monotonic()
    unpaused = control(pytester.path, "unpause", "p", "--output", "runset-results")
    assert unpaused.returncode == 0, unpaused.stderr
    out = finish(proc)
    assert proc.returncode == 0, out
    written = ticks(log)
    assert len(written) == 12
    inside = [t for t in written if frozen_at + SETTLE_S < t < unpaused_at]
    assert inside == [], f"written while paused: {inside}"
    report = load_report(run_dir)
    flow = flows_by_name(report)["ticks"]
    assert flow["status"] == "passed", flow["message"]
    assert report["paused_s"] >= 6, report["paused_s"]
    assert report["containment"] == tier
    attempt = json.loads((run_dir / "ticks" / "result.json").read_text())
    assert attempt["paused_s"] >= 6, attempt


def test_stop_drain_lets_the_running_flow_pass_and_runs_nothing_new(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    scripts: None,
) -> None:
    release = pytester.path / "release"
    write_runset(
        f'[[flows]]\nname = "running"\ncommand = ["{PYTHON}", "wait.py", "{release}"]\n'
        + "".join(f'[[flows]]\nname = "queued {i}"\ncommand = ["true"]\n' for i in range(3))
    )
    run_dir = pytester.path / "runset-results" / "d"
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "d", "-n", "1")
    assert wait_for((run_dir / "running" / "started").exists, 60), output_of(proc)
    stop = control(pytester.path, "stop", "--drain", "d", "--output", "runset-results")
    assert stop.returncode == 0, stop.stderr
    assert "draining" in stop.stdout
    # The request is taken (the run says it drains) before the running flow may end.
    assert wait_for(
        lambda: (
            "draining" in control(pytester.path, "status", "d", "--output", "runset-results").stdout
        ),
        10,
    )
    release.write_text("")
    out = finish(proc)
    assert proc.returncode == 2, out
    report = load_report(run_dir)
    statuses = {flow["name"]: flow["status"] for flow in report["flows"]}
    assert statuses == {
        "running": "passed",
        "queued 0": "not_run",
        "queued 1": "not_run",
        "queued 2": "not_run",
    }
    assert "Traceback" not in out


def test_stop_ends_the_run_as_ctrl_c_does(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    scripts: None,
) -> None:
    write_runset(
        f'[[flows]]\nname = "running"\ncommand = ["{PYTHON}", "wait.py", "never"]\n'
        '[[flows]]\nname = "queued"\ncommand = ["true"]\n'
    )
    run_dir = pytester.path / "runset-results" / "s"
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "s", "-n", "1")
    assert wait_for((run_dir / "running" / "started").exists, 60), output_of(proc)
    stop = control(pytester.path, "stop", "s", "--output", "runset-results")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.strip() == "run s: stopping"
    out = finish(proc)
    assert proc.returncode == 2, out
    report = load_report(run_dir)
    assert report["status"] == "interrupted"
    statuses = {flow["name"]: flow["status"] for flow in report["flows"]}
    assert statuses == {"running": "interrupted", "queued": "not_run"}
    assert processes_with_cookie_prefix("s.") == []
    assert "Traceback" not in out


def test_status_follows_a_live_run_then_prints_its_summary_and_a_finished_run_cannot_pause(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    scripts: None,
) -> None:
    release = pytester.path / "release"
    write_runset(
        '[[flows]]\nname = "quick"\ncommand = ["true"]\n'
        f'[[flows]]\nname = "long runner"\ncommand = ["{PYTHON}", "wait.py", "{release}"]\n'
        '[[flows]]\nname = "after"\ncommand = ["true"]\n'
    )
    run_dir = pytester.path / "runset-results" / "st"
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "st", "-n", "1")
    assert wait_for((run_dir / "long-runner" / "started").exists, 60), output_of(proc)
    assert wait_for(lambda: "long runner" in control(pytester.path, "status").stdout, 10)
    live = control(pytester.path, "status", "latest")
    assert live.returncode == 0, live.stderr
    lines = live.stdout.splitlines()
    assert lines[0] == "run st: running", live.stdout
    assert lines[1] == "running 1, queued 1, done 1 of 3", live.stdout
    assert len(lines) == 3
    assert lines[2].split()[0] == "gw0"
    assert lines[2].endswith("s  long runner")
    release.write_text("")
    out = finish(proc)
    assert proc.returncode == 0, out
    final = control(pytester.path, "status", "latest")
    assert final.returncode == 0, final.stderr
    assert final.stdout.splitlines()[0] == "run st: passed"
    assert "3 passed" in final.stdout
    paused = control(pytester.path, "pause", "st", "--output", "runset-results")
    assert paused.returncode == 4
    assert paused.stdout == ""
    assert len(paused.stderr.strip().splitlines()) == 1, paused.stderr
    assert "not running" in paused.stderr


def test_ctrl_z_pauses_the_flows_and_stops_pytest_and_fg_carries_on(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    scripts: None,
) -> None:
    # 3 s of work under a 4 s timeout; pytest is stopped for 7 s, longer than the flow's
    # timeout + kill grace + backstop margin: only a pause that stops every clock passes.
    write_runset(
        f'[[flows]]\nname = "ticks"\ncommand = ["{PYTHON}", "tick.py", "6"]\n'
        "timeout = 4\nkill_grace = 1\n"
    )
    run_dir = pytester.path / "runset-results" / "z"
    log = run_dir / "ticks" / "stdout.log"
    proc = spawn_pytest(
        "--runset", "run-set.toml", "--runset-run-id", "z", "-o", "runset_backstop_margin=1"
    )  # fmt: skip
    assert wait_for(lambda: len(ticks(log)) >= 2, 60), output_of(proc)
    proc.send_signal(signal.SIGTSTP)
    assert wait_for(lambda: proc_state(proc.pid) == "T", 10), proc_state(proc.pid)
    stopped_at = time.monotonic()
    # What another terminal sees meanwhile (checked last, after the run's own outcome).
    status = control(pytester.path, "status", "z", "--output", "runset-results")
    time.sleep(max(0.0, stopped_at + 7.0 - time.monotonic()))
    assert proc_state(proc.pid) == "T"
    continued_at = time.monotonic()
    proc.send_signal(signal.SIGCONT)
    out = finish(proc)
    assert proc.returncode == 0, out
    written = ticks(log)
    assert len(written) == 6
    # The flows are frozen as pytest stops itself.
    inside = [t for t in written if stopped_at + SETTLE_S < t < continued_at]
    assert inside == [], f"written while pytest was stopped: {inside}"
    report = load_report(run_dir)
    flow = flows_by_name(report)["ticks"]
    assert flow["status"] == "passed", flow["message"]
    assert "unresponsive" not in (flow["message"] or "")
    assert report["paused_s"] > 0
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0].startswith("run z: paused"), status.stdout


def test_flows_that_finish_while_pytest_is_sigstopped_are_not_taken_for_unresponsive(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    scripts: None,
) -> None:
    # Timeout 2 s, kill grace 0.5 s, backstop margin 1 s: the backstop is 3.5 s after
    # dispatch. pytest is stopped (SIGSTOP, not a pause) for 6 s while the flows finish.
    write_runset(
        "[runset]\ntimeout = 2\nkill_grace = 0.5\n"
        + "".join(
            f'[[flows]]\nname = "short {i}"\ncommand = ["{PYTHON}", "tick.py", "2"]\n'
            for i in range(2)
        )
    )
    run_dir = pytester.path / "runset-results" / "ss"
    proc = spawn_pytest(
        "--runset", "run-set.toml", "--runset-run-id", "ss", "-n", "2",
        "-o", "runset_backstop_margin=1",
    )  # fmt: skip
    assert wait_for(
        lambda: all((run_dir / f"short-{i}" / "started").exists() for i in range(2)), 60
    ), output_of(proc)
    proc.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    assert wait_for(lambda: proc_state(proc.pid) == "T", 10)
    # Both flows end while pytest cannot hear of it.
    assert wait_for(
        lambda: all((run_dir / f"short-{i}" / "result.json").exists() for i in range(2)), 30
    )
    time.sleep(max(0.0, stopped_at + 6.0 - time.monotonic()))
    proc.send_signal(signal.SIGCONT)
    out = finish(proc)
    assert proc.returncode == 0, out
    for flow in load_report(run_dir)["flows"]:
        assert flow["status"] == "passed", flow["message"]
        assert "unresponsive" not in (flow["message"] or "")

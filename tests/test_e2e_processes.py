"""Real processes, real kills: timeouts, crashed or frozen workers, interrupts, controller death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    TREE_SCRIPT,
    flows_by_name,
    load_report,
    process_alive,
    processes_with_cookie_prefix,
    wait_for,
)


@pytest.fixture
def tree_script(pytester: pytest.Pytester) -> Path:
    path = pytester.path / "tree.py"
    path.write_text(TREE_SCRIPT, encoding="utf-8")
    return path


def test_timeout_kills_the_whole_tree_including_a_daemon(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], tree_script: Path
) -> None:
    write_runset(
        f"""
[runset]
concurrency = 2
[[flows]]
name = "hangs"
command = [{sys.executable!r}, "tree.py"]
timeout = 3
kill_grace = 1
[[flows]]
name = "fine"
command = ["true"]
[[flows]]
name = "also fine"
command = ["sh", "-c", "echo done"]
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "tree", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    run_dir = pytester.path / "runset-results" / "tree"
    flows = flows_by_name(load_report(run_dir))
    assert flows["hangs"]["status"] == "timeout"
    assert flows["hangs"]["message"] == "timeout after 3s"
    assert flows["fine"]["status"] == "passed"
    assert flows["also fine"]["status"] == "passed"
    hang_dir = run_dir / "hangs"
    cookie = (hang_dir / "cookie").read_text()
    daemon = int((hang_dir / "daemon.pid").read_text())
    child = int((hang_dir / "child.pid").read_text())
    assert processes_with_cookie_prefix(cookie) == []
    assert wait_for(lambda: not process_alive(daemon), 10)
    assert not process_alive(child)
    # The daemon left the process group, so only the cookie sweep could have found it.
    assert flows["hangs"]["leftover_processes"] >= 1
    result.stdout.fnmatch_lines(["*FAILED*run-set.toml::hangs*"])


def test_leftover_daemon_of_a_passing_flow_is_killed(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "leak.py").write_text(
        "import os, time, pathlib\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "pathlib.Path(os.environ['RUNSET_FLOW_DIR'], 'cookie').write_text("
        "os.environ['RUNSET_FLOW_ID'])\n",
        encoding="utf-8",
    )
    write_runset(f'[[flows]]\nname = "leaks"\ncommand = [{sys.executable!r}, "leak.py"]\n')
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "leak", "-p", "no:cacheprovider"
    )
    assert result.ret == 0
    run_dir = pytester.path / "runset-results" / "leak"
    flow = flows_by_name(load_report(run_dir))["leaks"]
    assert flow["status"] == "passed"
    # The daemon's intermediate parent may still be alive at the sweep: one or two processes.
    assert flow["leftover_processes"] >= 1
    assert processes_with_cookie_prefix((run_dir / "leaks" / "cookie").read_text()) == []


def test_killed_gateway_fails_only_its_flow_and_is_replaced(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    # The flow's parent is the worker gateway: killing it is a worker crash mid-flow.
    write_runset(
        """
[runset]
concurrency = 2
[[flows]]
name = "crasher"
command = ["sh", "-c", "sleep 0.2; kill -9 $PPID; sleep 600"]
[[flows]]
name = "a"
command = ["sleep", "0.5"]
[[flows]]
name = "b"
command = ["true"]
[[flows]]
name = "c"
command = ["true"]
[[flows]]
name = "d"
command = ["true"]
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "crash", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    run_dir = pytester.path / "runset-results" / "crash"
    report = load_report(run_dir)
    flows = flows_by_name(report)
    assert flows["crasher"]["status"] == "error"
    assert "worker crashed" in flows["crasher"]["message"]
    for name in "abcd":
        assert flows[name]["status"] == "passed", flows[name]
    assert processes_with_cookie_prefix("crash.") == []
    result.stdout.fnmatch_lines(["*ERROR*run-set.toml::crasher*"])


def test_frozen_worker_hits_the_backstop(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    # SIGSTOP on the gateway: it can neither kill its flow nor answer. The controller's
    # backstop kills the gateway group, sweeps the cookie and gives the slot a new worker.
    write_runset(
        """
[runset]
concurrency = 1
[[flows]]
name = "freezer"
command = ["sh", "-c", "kill -STOP $PPID; sleep 600"]
timeout = 1
kill_grace = 0.5
[[flows]]
name = "after"
command = ["true"]
"""
    )
    pytester.makeini("[pytest]\nrunset_backstop_margin = 1\n")
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "frozen", "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "frozen"))
    assert flows["freezer"]["status"] == "timeout"
    assert "unresponsive" in flows["freezer"]["message"]
    assert flows["after"]["status"] == "passed"
    assert flows["after"]["worker"] != flows["freezer"]["worker"]
    assert processes_with_cookie_prefix("frozen.") == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_keeps_finished_results_and_leaves_nothing_running(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    tree_script: Path,
    signum: int,
) -> None:
    write_runset(
        f"""
[runset]
concurrency = 2
kill_grace = 1
[[flows]]
name = "long one"
command = [{sys.executable!r}, "tree.py"]
[[flows]]
name = "quick"
command = ["true"]
[[flows]]
name = "long two"
command = [{sys.executable!r}, "tree.py"]
[[flows]]
name = "never started"
command = ["true"]
"""
    )
    run_id = f"int{int(signum)}"
    run_dir = pytester.path / "runset-results" / run_id
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", run_id)
    started = wait_for(
        lambda: (
            (run_dir / "long-one" / "started").exists()
            and (run_dir / "long-two" / "started").exists()
            and (run_dir / "journal.jsonl").exists()
            and "quick" in (run_dir / "journal.jsonl").read_text()
        )
    )
    assert started, proc.stdout.read().decode() if proc.stdout else ""
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out.decode()
    report = load_report(run_dir)
    assert report["status"] == "interrupted"
    flows = flows_by_name(report)
    assert flows["quick"]["status"] == "passed"
    assert flows["long one"]["status"] == "interrupted"
    assert flows["long two"]["status"] == "interrupted"
    assert flows["never started"]["status"] == "not_run"
    assert [flow["name"] for flow in report["flows"]] == [
        "long one",
        "quick",
        "long two",
        "never started",
    ]
    assert processes_with_cookie_prefix(f"{run_id}.") == []
    assert b"Traceback" not in out


def test_controller_sigkill_takes_the_flows_down(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    tree_script: Path,
) -> None:
    write_runset(
        f"""
[runset]
concurrency = 2
[[flows]]
name = "long"
command = [{sys.executable!r}, "tree.py"]
[[flows]]
name = "longer"
command = [{sys.executable!r}, "tree.py"]
"""
    )
    run_dir = pytester.path / "runset-results" / "dead"
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "dead")
    assert wait_for(
        lambda: (
            (run_dir / "long" / "started").exists() and (run_dir / "longer" / "started").exists()
        )
    )
    assert processes_with_cookie_prefix("dead.")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # Gateways notice the closed channel (or their new parent) and kill their flows.
    assert wait_for(lambda: processes_with_cookie_prefix("dead.") == [], timeout=30)
    daemon = int((run_dir / "long" / "daemon.pid").read_text())
    assert wait_for(lambda: not process_alive(daemon), 10)

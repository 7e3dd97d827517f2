"""Services and sidecars end to end, with real servers on 127.0.0.1 and real kills."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report, processes_with_cookie_prefix, wait_for

HTTP_SERVICE = """
[[runset.services]]
name = "app"
command = ["{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
ready = "http://127.0.0.1:{port}/"
"""
FETCH = json.dumps(
    [
        sys.executable,
        "-c",
        "import os, urllib.request; "
        "print(urllib.request.urlopen(os.environ['RUNSET_BASE_URL']).status)",
    ]
)


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(tmp_path / "locks"))


def test_flows_reach_a_service_through_its_port_and_it_is_stopped_after(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[runset]\nconcurrency = 2\nbase_url = "http://127.0.0.1:{services.app.port}/"\n'
        + HTTP_SERVICE
        + "".join(f'[[flows]]\nname = "fetch {i}"\ncommand = {FETCH}\n' for i in range(3))
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "ok")
    assert result.ret == 0, result.stdout.str()
    run_dir = pytester.path / "runset-results" / "ok"
    for i in range(3):
        assert (run_dir / f"fetch-{i}" / "stdout.log").read_text().strip() == "200"
    assert "GET / HTTP" in (run_dir / "services" / "app.log").read_text()
    assert processes_with_cookie_prefix("ok.") == []


def test_a_service_that_never_becomes_ready_fails_every_flow_with_its_log(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[[runset.services]]
name = "slow"
command = ["sh", "-c", "echo warming up forever; sleep 600"]
ready = "tcp://127.0.0.1:{port}"
ready_timeout = "1s"
[[flows]]
name = "a"
command = ["true"]
[[flows]]
name = "b"
command = ["true"]
"""
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "nr")
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "nr"))
    for name in ("a", "b"):
        assert flows[name]["status"] == "error"
        assert "service 'slow' not ready after 1s" in flows[name]["message"]
    result.stdout.fnmatch_lines(["*last lines of services/slow.log*", "warming up forever"])
    assert processes_with_cookie_prefix("nr.") == []


def test_a_service_that_crashes_mid_run_fails_the_rest(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    # The service serves until its flag file appears, then dies.
    (pytester.path / "flaky_service.py").write_text(
        "import os, socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "print('listening', flush=True)\n"
        "while not os.path.exists('die'):\n"
        "    time.sleep(0.05)\n"
        "print('fatal: lost my database', flush=True)\n"
        "sys.exit(5)\n"
    )
    write_runset(
        """
[runset]
concurrency = 1
[[runset.services]]
name = "db"
command = ["{python}", "flaky_service.py", "{port}"]
ready = "tcp://127.0.0.1:{port}"
[[flows]]
name = "kills it"
command = ["sh", "-c", "touch die; sleep 600"]
[[flows]]
name = "after"
command = ["true"]
"""
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "cr")
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "cr"))
    assert flows["kills it"]["status"] == "error"
    assert "service 'db'" in flows["kills it"]["message"]
    assert flows["after"]["status"] == "error"
    assert "exited with code 5" in flows["after"]["message"]
    result.stdout.fnmatch_lines(["*fatal: lost my database*"])
    assert processes_with_cookie_prefix("cr.") == []


def test_a_service_that_ignores_sigterm_is_killed_and_swept(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[runset]
kill_grace = "0.5s"
[[runset.services]]
name = "stubborn"
command = "trap '' TERM; sleep 600 & sleep 600"
shell = true
[[flows]]
name = "a"
command = ["true"]
"""
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "st")
    assert result.ret == 0
    assert processes_with_cookie_prefix("st.") == []


def test_a_sidecar_runs_next_to_its_flow_only(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[[flows]]
name = "with sidecar"
command = ["{python}", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{sidecar.port}/').status)"]
[flows.sidecar]
command = ["{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
ready = "http://127.0.0.1:{port}/"
[[flows]]
name = "broken sidecar"
command = ["true"]
[flows.sidecar]
command = ["sh", "-c", "echo cannot bind; exit 3"]
ready = "tcp://127.0.0.1:{port}"
"""
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "sc")
    assert result.ret == 1
    run_dir = pytester.path / "runset-results" / "sc"
    flows = flows_by_name(load_report(run_dir))
    assert flows["with sidecar"]["status"] == "passed"
    assert (run_dir / "with-sidecar" / "stdout.log").read_text().strip() == "200"
    assert "GET / HTTP" in (run_dir / "with-sidecar" / "sidecar.log").read_text()
    assert flows["broken sidecar"]["status"] == "error"
    assert "sidecar exited with code 3" in flows["broken sidecar"]["message"]
    result.stdout.fnmatch_lines(["*last lines of broken-sidecar/sidecar.log*", "cannot bind"])
    assert processes_with_cookie_prefix("sc.") == []


def test_a_sidecar_that_dies_mid_flow_ends_the_flow_as_error(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        """
[[flows]]
name = "outlives its sidecar"
command = ["sleep", "600"]
timeout = "2m"
kill_grace = "1s"
[flows.sidecar]
command = ["sh", "-c", "echo up; sleep 1; echo crashing; exit 4"]
ports = 0
[[flows]]
name = "next"
command = ["true"]
"""
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "sd")
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "sd"))
    flow = flows["outlives its sidecar"]
    assert flow["status"] == "error"
    assert flow["message"] == "sidecar exited with code 4 while the flow ran"
    assert flow["duration_s"] < 60  # it did not wait for its own timeout
    assert flows["next"]["status"] == "passed"
    result.stdout.fnmatch_lines(["*last lines of outlives-its-sidecar/sidecar.log*", "crashing"])
    assert processes_with_cookie_prefix("sd.") == []


def test_ctrl_c_stops_the_services_too(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_runset(
        HTTP_SERVICE + '[[flows]]\nname = "long"\ncommand = ["sleep", "600"]\nkill_grace = "1s"\n'
    )
    run_dir = pytester.path / "runset-results" / "cc"
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "cc")
    assert wait_for((run_dir / "long").exists, 60)
    assert processes_with_cookie_prefix("cc.service.")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert wait_for(lambda: not processes_with_cookie_prefix("cc."), 10)
    assert flows_by_name(load_report(run_dir))["long"]["status"] == "interrupted"

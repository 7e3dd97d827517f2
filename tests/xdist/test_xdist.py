"""pytest-xdist end to end: flows in xdist's workers give the same run as pytest-runset's pool."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    TREE_SCRIPT,
    flows_by_name,
    load_report,
    process_alive,
    processes_with_cookie_prefix,
    wait_for,
)

# xdist.plugin, not xdist: without pytest-xdist installed, "xdist" alone would import this test
# folder (tests/ is on sys.path) as a namespace package.
pytest.importorskip("xdist.plugin", reason="needs pytest-xdist (tox -e xdist, .ci/run)")

REPO = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
FETCH = "import sys, urllib.request\nurllib.request.urlopen(sys.argv[1], timeout=10)\n"
# Fields that depend on timing or on which worker happened to take a flow.
VOLATILE = frozenset({"duration_s", "started_s", "worker", "slot", "ports", "history", "resources"})

# Records when the flow held its resource (monotonic clock, shared by every process here).
SPAN = """\
import os, sys, time
start = time.monotonic()
time.sleep(0.4)
worker, slug = os.environ["RUNSET_WORKER"], os.environ["RUNSET_SLUG"]
with open(sys.argv[1], "a") as out:
    out.write(f"{start} {time.monotonic()} {worker} {slug}\\n")
"""


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Leases are per host: a private lock directory keeps other sessions' personas apart.
    lock_dir = tmp_path / "locks"
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(lock_dir))
    return lock_dir


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=240)


def acceptance_runset() -> str:
    return f"""
[runset]
name = "accept"
timeout = "60s"
kill_grace = "1s"

[runset.ports]
range = [24000, 24999]

[[runset.services]]
name = "app"
command = ["{{python}}", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"]
ready = "http://127.0.0.1:{{port}}/"

[personas.alice]
username = "alice"

[[flows]]
name = "Passes"
command = ["sh", "-c", "echo run=$RUNSET_RUN_ID slot=$RUNSET_SLOT worker=$RUNSET_WORKER"]

[[flows]]
name = "fails"
command = [{sys.executable!r}, "-c", "import sys; print('broken', file=sys.stderr); sys.exit(3)"]

[[flows]]
name = "skipped by exit 77"
command = ["sh", "-c", "exit 77"]

[[flows]]
name = "as alice"
persona = "alice"
command = ["sh", "-c", "echo persona=$RUNSET_PERSONA user={{persona.username}}"]

[[flows]]
name = "own port"
ports = 1
command = ["sh", "-c", "echo port=$RUNSET_PORT"]

[[flows]]
name = "uses the service"
command = [{sys.executable!r}, "fetch.py", "http://127.0.0.1:{{services.app.port}}/"]

[[flows]]
name = "flaky once"
retries = 1
command = ["sh", "-c", "test -e $RUNSET_RUN_DIR/mark && exit 0; touch $RUNSET_RUN_DIR/mark; exit 1"]

[[flows]]
name = "skipped by key"
command = ["true"]
skip = "not today"

[[flows]]
name = "passes"
command = ["true"]

[[flows]]
name = "in a copy"
workspace = "copy"
command = ["sh", "-c", "test -e fetch.py && pwd"]
"""


def flow_events(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    return [event for event in map(json.loads, lines) if event.get("event") == "flow"]


def stable(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in flow.items() if k not in VOLATILE} for flow in report["flows"]]


def test_the_same_run_set_gives_the_same_report_with_and_without_xdist(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(acceptance_runset())
    (pytester.path / "fetch.py").write_text(FETCH)
    under_xdist = run_pytest(
        pytester, "--runset", "run-set.toml", "-rfEsx", "-n", "2", "--runset-run-id", "with-xdist"
    )
    own_pool = run_pytest(
        pytester, "--runset", "run-set.toml", "-rfEsx", "--runset-workers", "2"
        , "--runset-run-id", "pool"
    )  # fmt: skip
    for result in (under_xdist, own_pool):
        assert result.ret == 1, result.stdout.str()
        result.assert_outcomes(passed=7, failed=1, skipped=2)
    assert "created: 2/2 workers" in under_xdist.stdout.str()
    root = pytester.path / "runset-results"
    xdist_report = load_report(root / "with-xdist")
    pool_report = load_report(root / "pool")
    assert stable(xdist_report) == stable(pool_report)
    assert xdist_report["workers"] == pool_report["workers"] == 2
    assert xdist_report["status"] == pool_report["status"] == "failed"
    volatile_summary = {"sum_duration_s", "lower_bound_s", "parallelism_efficiency"}
    assert {k: v for k, v in xdist_report["summary"].items() if k not in volatile_summary} == {
        k: v for k, v in pool_report["summary"].items() if k not in volatile_summary
    }
    flows = flows_by_name(xdist_report)
    assert [flow["slug"] for flow in xdist_report["flows"]] == [
        "passes",
        "fails",
        "skipped-by-exit-77",
        "as-alice",
        "own-port",
        "uses-the-service",
        "flaky-once",
        "skipped-by-key",
        "passes-2",
        "in-a-copy",
    ]
    assert flows["flaky once"]["flaky"]
    assert flows["flaky once"]["attempts"] == 2
    assert {flow["worker"] for flow in xdist_report["flows"] if flow["worker"]} <= {"gw0", "gw1"}
    assert flows["own port"]["ports"]
    assert flows["as alice"]["persona"] == "alice"
    # The same slug directories with the same files, and one report per run.
    for run_id in ("with-xdist", "pool"):
        run_dir = root / run_id
        for flow in flows_by_name(load_report(run_dir)).values():
            if flow["dir"] is None:
                continue
            files = {path.name for path in (run_dir / flow["dir"]).iterdir()}
            assert {"stdout.log", "stderr.log", "result.json"} <= files, (run_id, flow["slug"])
        assert len(flow_events(run_dir)) == len(xdist_report["flows"])
        assert (run_dir / "services" / "app.log").exists()
    assert sorted(path.parent.name for path in root.rglob("report.json")) == ["pool", "with-xdist"]
    assert {p.name for p in (root / "with-xdist").iterdir() if p.is_dir()} == {
        p.name for p in (root / "pool").iterdir() if p.is_dir()
    }
    # A workspace flow ran in its own copy, inside its slug directory.
    copy_dir = root / "with-xdist" / "in-a-copy"
    assert (copy_dir / "stdout.log").read_text().strip() == str(copy_dir / "workspace")
    # The run id reaches the flows, and RUNSET_SLOT/RUNSET_WORKER name the xdist worker.
    out = (root / "with-xdist" / flows["Passes"]["dir"] / "stdout.log").read_text()
    slot = flows["Passes"]["slot"]
    assert out.strip() == f"run=with-xdist slot={slot} worker=gw{slot}"
    assert (root / "latest").resolve() == (root / "pool").resolve()
    # pytest's own summary says the same: same outcomes, same places, same messages.
    kinds = ("FAILED", "ERROR", "SKIPPED", "XFAIL")
    assert sorted(line for line in under_xdist.outlines if line.startswith(kinds)) == sorted(
        line for line in own_pool.outlines if line.startswith(kinds)
    )
    summary_line = [line for line in under_xdist.outlines if line.startswith("runset accept:")]
    assert summary_line
    assert "7 passed, 1 failed, 2 skipped" in summary_line[0]
    assert "on 2 workers" in summary_line[0]


def span_flows(prefix: str, count: int, log: Path, extra: str) -> str:
    return "".join(
        f'[[flows]]\nname = "{prefix} {i}"\n{extra}\ncommand = ["{{python}}", "span.py", "{log}"]\n'
        for i in range(count)
    )


def read_spans(path: Path) -> list[tuple[float, float, str]]:
    """``(start, end, worker)`` of each flow that wrote to ``path``, by start."""
    return sorted((start, end, worker) for start, end, worker, _ in read_named_spans(path))


def read_named_spans(path: Path) -> list[tuple[float, float, str, str]]:
    spans = []
    for line in path.read_text().splitlines():
        start, end, worker, slug = line.split()
        spans.append((float(start), float(end), worker, slug))
    return spans


def test_a_persona_and_a_tag_limit_of_one_never_overlap_across_xdist_workers(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    alice, db = pytester.path / "alice.spans", pytester.path / "db.spans"
    (pytester.path / "span.py").write_text(SPAN)
    write_runset(
        '[runset]\ntimeout = "60s"\n[runset.limits]\ndb = 1\n'
        '[personas.alice]\nusername = "alice"\n'
        + span_flows("alice", 3, alice, 'persona = "alice"')
        + span_flows("db", 3, db, 'tags = ["db"]')
    )
    result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "3", "--runset-run-id", "r")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=6)
    for path in (alice, db):
        spans = read_spans(path)
        assert len(spans) == 3
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert end <= start, f"{path.name}: overlapping spans {spans}"
    report = load_report(pytester.path / "runset-results" / "r")
    assert all(flow["persona"] == "alice" for flow in report["flows"][:3])
    # Several xdist workers took part, so the leases, not chance, kept the flows apart.
    workers = {worker for path in (alice, db) for _, _, worker in read_spans(path)}
    assert len(workers) >= 2


def test_an_exclusive_flow_runs_alone_across_xdist_workers(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    log = pytester.path / "all.spans"
    (pytester.path / "span.py").write_text(SPAN)
    write_runset(
        span_flows("before", 3, log, "")
        + span_flows("alone", 1, log, "exclusive = true")
        + span_flows("after", 3, log, "")
    )
    result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "3", "--runset-run-id", "x")
    assert result.ret == 0, result.stdout.str()
    spans = read_named_spans(log)
    assert len(spans) == 7
    (alone,) = [span for span in spans if span[3] == "alone-0"]
    for other in spans:
        if other is not alone:
            assert other[1] <= alone[0] or other[0] >= alone[1], (alone, other)
    # Several xdist workers took part: the lock, not a single worker, kept it alone.
    assert len({worker for _, _, worker, _ in spans}) >= 2


def test_a_busy_persona_fails_the_flow_after_its_timeout_with_the_pool_message(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], private_lock_dir: Path
) -> None:
    from pytest_runset.resources.leases import Lease, Leaser, lock_directory

    write_runset(
        '[personas.alice]\nusername = "alice"\n'
        '[[flows]]\nname = "needs alice"\npersona = "alice"\ntimeout = "2s"\ncommand = ["true"]\n'
        '[[flows]]\nname = "free"\ncommand = ["true"]\n'
    )
    assert lock_directory() == private_lock_dir
    held = Lease()
    assert Leaser(private_lock_dir).take_persona(["alice"], held)
    try:
        result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "2", "--runset-run-id", "b")
    finally:
        held.release()
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(passed=1, errors=1)
    flow = flows_by_name(load_report(pytester.path / "runset-results" / "b"))["needs alice"]
    assert flow["status"] == "error"
    assert re.fullmatch(r"persona 'alice' busy for [23]s", flow["message"]), flow["message"]
    assert flow["dir"] is None
    result.stdout.fnmatch_lines(["*error: persona 'alice' busy for *s*"])


def test_a_timed_out_flow_in_an_xdist_worker_leaves_no_process_behind(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT)
    write_runset(
        '[runset]\nkill_grace = "1s"\n'
        '[[flows]]\nname = "tree"\ntimeout = "4s"\ncommand = ["{python}", "tree.py"]\n'
        '[[flows]]\nname = "quick"\ncommand = ["true"]\n'
    )
    result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "2", "--runset-run-id", "t1")
    assert result.ret == 1, result.stdout.str()
    run_dir = pytester.path / "runset-results" / "t1"
    flow = flows_by_name(load_report(run_dir))["tree"]
    assert flow["status"] == "timeout", flow
    assert (run_dir / "tree" / "started").exists()
    # The cookie starts with the run id: nothing of this run may be left alive.
    assert wait_for(lambda: not processes_with_cookie_prefix("t1."), timeout=30)
    daemon = int((run_dir / "tree" / "daemon.pid").read_text())
    assert wait_for(lambda: not process_alive(daemon), timeout=30)


def test_a_resumed_run_under_xdist_runs_only_what_did_not_pass(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    count = 'echo x >> "$RUNSET_RUN_DIR/ran-$RUNSET_SLUG"'
    write_runset(
        f'[[flows]]\nname = "steady"\ncommand = ["sh", "-c", {json.dumps(count)}]\n'
        '[[flows]]\nname = "skipped"\ncommand = ["true"]\nskip = "not today"\n'
        f'[[flows]]\nname = "second time"\ncommand = ["sh", "-c", '
        f"{json.dumps(count + '; test -e second.ok')}]\n"
    )
    first = run_pytest(pytester, "--runset", "run-set.toml", "-n", "2", "--runset-run-id", "r1")
    assert first.ret == 1, first.stdout.str()
    (pytester.path / "second.ok").write_text("")
    resumed = run_pytest(pytester, "--runset", "run-set.toml", "-n", "2", "--runset-resume", "last")
    assert resumed.ret == 0, resumed.stdout.str()
    resumed.assert_outcomes(passed=2, skipped=1)
    run_dir = pytester.path / "runset-results" / "r1"
    report = load_report(run_dir)
    assert report["status"] == "passed"
    assert [flow["status"] for flow in report["flows"]] == ["passed", "skipped", "passed"]
    assert (run_dir / "ran-steady").read_text().count("x") == 1
    assert (run_dir / "ran-second-time").read_text().count("x") == 2
    events = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [event["event"] for event in events].count("resume") == 1
    assert [event.get("slug") for event in events if event["event"] == "flow"].count("steady") == 1


def test_the_global_timeout_under_xdist_kills_running_flows_and_leaves_the_rest_not_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT)
    write_runset(
        '[runset]\nkill_grace = "1s"\n'
        '[[flows]]\nname = "quick"\ncommand = ["true"]\n'
        '[[flows]]\nname = "endless a"\ncommand = ["{python}", "tree.py"]\n'
        '[[flows]]\nname = "endless b"\ncommand = ["{python}", "tree.py"]\n'
        '[[flows]]\nname = "later 1"\ncommand = ["true"]\n'
        '[[flows]]\nname = "later 2"\ncommand = ["true"]\n'
    )
    result = run_pytest(
        pytester, "--runset", "run-set.toml", "-n", "2", "--runset-run-id", "gt"
        , "--runset-global-timeout", "15s"
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    report = load_report(pytester.path / "runset-results" / "gt")
    flows = flows_by_name(report)
    assert flows["quick"]["status"] == "passed"
    for name in ("endless a", "endless b"):
        assert flows[name]["status"] == "timeout", flows[name]
        assert "global timeout of 15s expired" in flows[name]["message"]
    for name in ("later 1", "later 2"):
        assert flows[name]["status"] == "not_run", flows[name]
        assert flows[name]["message"] == "not run: the run's global timeout of 15s expired"
    assert report["status"] == "failed"
    assert wait_for(lambda: not processes_with_cookie_prefix("gt."), timeout=30)


def test_maxfail_under_xdist_leaves_the_flows_it_never_started_not_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "bad"\ncommand = ["sh", "-c", "sleep 0.5; exit 3"]\n'
        + "".join(f'[[flows]]\nname = "job {i}"\ncommand = ["sleep", "1"]\n' for i in range(8))
    )
    result = run_pytest(
        pytester, "--runset", "run-set.toml", "-n", "2", "-x", "--runset-run-id", "mf"
    )
    # pytest-xdist ends a session that -x stopped as interrupted.
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    report = load_report(pytester.path / "runset-results" / "mf")
    flows = flows_by_name(report)
    assert flows["bad"]["status"] == "failed"
    assert report["status"] == "failed"
    others = [flow for name, flow in flows.items() if name != "bad"]
    assert {flow["status"] for flow in others} <= {"passed", "not_run"}
    not_run = [flow for flow in others if flow["status"] == "not_run"]
    assert not_run
    assert all(flow["message"] == "not run: dispatch stopped" for flow in not_run)
    assert len(flow_events(pytester.path / "runset-results" / "mf")) == 9


def test_runset_workers_and_xdist_n_together_are_refused(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "a"\ncommand = ["true"]\n')
    result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "2", "--runset-workers", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "--runset-workers" in line]
    assert len(errors) == 1, result.errlines
    assert "-n 2: give one of them" in errors[0]
    assert "Traceback" not in result.stderr.str()


def test_a_service_that_does_not_start_fails_every_flow_under_xdist(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[runset.services]]\nname = "slow"\n'
        'command = ["sh", "-c", "echo warming up forever; sleep 600"]\n'
        'ready = "tcp://127.0.0.1:{port}"\nready_timeout = "1s"\n'
        '[[flows]]\nname = "a"\ncommand = ["true"]\n'
        '[[flows]]\nname = "b"\ncommand = ["true"]\n'
    )
    result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "2", "--runset-run-id", "nr")
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(errors=2)
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "nr"))
    for name in ("a", "b"):
        assert flows[name]["status"] == "error"
        assert "service 'slow' not ready after 1s" in flows[name]["message"]
    result.stdout.fnmatch_lines(["*last lines of services/slow.log*", "warming up forever"])
    assert wait_for(lambda: not processes_with_cookie_prefix("nr."), timeout=30)


def test_a_service_that_dies_mid_run_fails_the_running_flow_and_the_rest_under_xdist(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "flaky_service.py").write_text(
        "import os, socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "while not os.path.exists('die'):\n"
        "    time.sleep(0.05)\n"
        "print('fatal: lost my database', flush=True)\n"
        "sys.exit(5)\n"
    )
    write_runset(
        '[[runset.services]]\nname = "db"\ncommand = ["{python}", "flaky_service.py", "{port}"]\n'
        'ready = "tcp://127.0.0.1:{port}"\n'
        '[[flows]]\nname = "kills it"\ncommand = ["sh", "-c", "touch die; sleep 600"]\n'
        '[[flows]]\nname = "after"\nretries = 2\ncommand = ["true"]\n'
    )
    result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "1", "--runset-run-id", "cr")
    assert result.ret == 1, result.stdout.str()
    run_dir = pytester.path / "runset-results" / "cr"
    flows = flows_by_name(load_report(run_dir))
    assert flows["kills it"]["status"] == "error"
    assert "service 'db'" in flows["kills it"]["message"]
    assert flows["after"]["status"] == "error"
    assert flows["after"]["attempts"] == 1
    assert "exited with code 5" in flows["after"]["message"]
    result.stdout.fnmatch_lines(["*fatal: lost my database*"])
    assert wait_for(lambda: not processes_with_cookie_prefix("cr."), timeout=30)


def test_ctrl_c_of_the_xdist_controller_writes_the_report_and_stops_everything(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT)
    write_runset(
        '[runset]\nkill_grace = "1s"\n[runset.ports]\nrange = [25000, 25999]\n'
        '[[runset.services]]\nname = "app"\n'
        'command = ["{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
        'ready = "tcp://127.0.0.1:{port}"\n'
        '[[flows]]\nname = "quick"\ncommand = ["true"]\n'
        + "".join(
            f'[[flows]]\nname = "hang {i}"\ntimeout = "5m"\ncommand = ["{{python}}", "tree.py"]\n'
            for i in range(4)
        )
    )
    proc = subprocess.Popen(
        [*PYTEST, "--runset", "run-set.toml", "-n", "2", "--runset-run-id", "c1"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    run_dir = pytester.path / "runset-results" / "c1"
    try:
        started = lambda: len(list(run_dir.glob("hang-*/started"))) == 2  # noqa: E731
        assert wait_for(started, timeout=120)
        os.kill(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = output.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text
    report = load_report(run_dir)
    statuses = {flow["name"]: flow["status"] for flow in report["flows"]}
    assert report["status"] == "interrupted"
    # The two flows that were running were stopped; the rest never started (or had finished).
    values = list(statuses.values())
    assert values.count("interrupted") == 2, statuses
    assert values.count("not_run") >= 2, statuses
    assert set(values) <= {"passed", "interrupted", "not_run"}, statuses
    assert len(flow_events(run_dir)) == 5
    assert wait_for(lambda: not processes_with_cookie_prefix("c1."), timeout=30)


def test_the_example_run_set_passes_under_xdist(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    started = time.monotonic()
    output_args = ["--runset-output", str(tmp_path), "--runset-run-id", "example"]
    result = subprocess.run(
        [*PYTEST, "--runset", "examples/run-set.toml", "-n", "2", "-q", *output_args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = load_report(tmp_path / "example")
    assert report["status"] == "passed"
    statuses = {flow["name"]: flow["status"] for flow in report["flows"]}
    assert statuses["sign in"] == "passed"
    assert statuses["own port"] == "passed"
    assert statuses["skipped when no sandbox"] == "skipped"
    assert report["workers"] == 2
    assert time.monotonic() - started < 300


@pytest.mark.parametrize(
    "option",
    [
        ["--runset-tx", "popen"],
        ["--runset-px", "popen"],
        ["--runset-remote-root", "/srv/work"],
        # Coordinated runs need pytest-runset's own workers (docs/coordinated-runs.md).
        ["--runset-coordinator", "redis://127.0.0.1:9/0"],
        ["--runset-queue", "pipeline-1"],
    ],
)
def test_gateway_options_and_xdist_n_together_are_refused(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], option: list[str]
) -> None:
    write_runset('[[flows]]\nname = "a"\ncommand = ["true"]\n')
    result = run_pytest(pytester, "--runset", "run-set.toml", "-n", "2", *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if option[0] in line]
    assert len(errors) == 1, result.errlines
    assert "Traceback" not in result.stderr.str()


def test_containment_limits_and_usage_are_the_same_under_xdist(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    marker = f"60{os.getpid() % 1000:03d}"
    write_runset(
        '[runset]\ntimeout = "60s"\n'
        '[[flows]]\nname = "escape"\nshell = true\n'
        f"command = \"setsid sh -c 'exec env -i sleep {marker}' & echo started\"\n"
        '[[flows]]\nname = "hog"\nmemory_max = "100MiB"\n'
        'command = ["{python}", "-c", "x = bytearray(300 * 1024 * 1024)"]\n'
        '[[flows]]\nname = "alloc"\n'
        'command = ["{python}", "-c", "x = bytearray(200 * 1024 * 1024); x[::4096] = '
        'b\\"1\\" * len(x[::4096])"]\n'
    )
    result = run_pytest(
        pytester, "--runset", "run-set.toml", "-n", "2", "--runset-run-id", "k1",
        "--runset-containment", "cgroup",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    report = load_report(pytester.path / "runset-results" / "k1")
    flows = flows_by_name(report)
    assert report["containment"] == "cgroup"
    assert flows["escape"]["status"] == "passed"
    assert flows["escape"]["leftover_processes"] >= 1
    assert flows["hog"]["status"] == "failed"
    assert flows["hog"]["message"].startswith("memory limit 100 MiB exceeded")
    assert flows["alloc"]["resources"]["peak_memory_bytes"] >= 150 * 1024 * 1024
    found = subprocess.run(
        ["pgrep", "-f", f"sleep {marker}"], check=False, capture_output=True, text=True
    )
    assert found.stdout.strip() == ""


def test_a_pause_under_xdist_freezes_the_flow_and_stops_its_clock(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[runset]\ntimeout = "9s"\n[[flows]]\nname = "work"\nshell = true\n'
        'command = "for i in $(seq 12); do date +%s.%N; sleep 0.5; done"\n'
    )
    proc = subprocess.Popen(
        [*PYTEST, "--runset", "run-set.toml", "-n", "1", "--runset-run-id", "p1"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    run_dir = pytester.path / "runset-results" / "p1"
    log = run_dir / "work" / "stdout.log"
    cli = [sys.executable, "-m", "pytest_runset.cli"]
    try:
        assert wait_for(lambda: log.exists() and log.read_text().count("\n") >= 2, 120)
        subprocess.run([*cli, "pause", str(run_dir)], check=True, capture_output=True)
        time.sleep(7)
        subprocess.run([*cli, "unpause", str(run_dir)], check=True, capture_output=True)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output.decode(errors="replace")
    stamps = [float(line) for line in log.read_text().split()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    # One long silence: the pause; the flow ran past its 9 s timeout and still passed.
    assert max(gaps) >= 5.0
    report = load_report(run_dir)
    assert report["paused_s"] >= 5.0
    assert flows_by_name(report)["work"]["status"] == "passed"


def test_sighup_of_the_xdist_controller_writes_the_report_and_stops_everything(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT)
    write_runset(
        '[runset]\nkill_grace = "1s"\n'
        '[[flows]]\nname = "hang"\ntimeout = "5m"\ncommand = ["{python}", "tree.py"]\n'
    )
    proc = subprocess.Popen(
        [*PYTEST, "--runset", "run-set.toml", "-n", "1", "--runset-run-id", "h1"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    run_dir = pytester.path / "runset-results" / "h1"
    try:
        assert wait_for((run_dir / "hang" / "started").exists, 120)
        os.kill(proc.pid, signal.SIGHUP)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output.decode(errors="replace")
    assert load_report(run_dir)["flows"][0]["status"] == "interrupted"
    assert wait_for(lambda: not processes_with_cookie_prefix("h1."), timeout=30)

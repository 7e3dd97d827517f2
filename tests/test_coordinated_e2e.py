"""Coordinated runs end to end: real pytest sessions sharing a real redis-server on loopback.

Each session is a ``python -m pytest`` subprocess with a lock directory of its own, as if it
ran on a machine of its own: only the coordinator connects them. Flows are sub-second sleeps
that append to a counter file, so "each flow ran once" is a line count.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis_support import RedisServer, redis_server, tls_redis_server

from conftest import load_report, wait_for

__all__ = ["redis_server", "tls_redis_server"]

# Each flow appends "<name> <who> start|end <time>" to $COUNTER; persona flows also hold it.
FLOW = (
    "import os, sys, time\n"
    "def note(what):\n"
    "    with open(os.environ['COUNTER'], 'a') as f:\n"
    "        who = os.environ['WHO']\n"
    "        f.write(f\"{os.environ['RUNSET_FLOW']} {who} {what} {time.time()}\\n\")\n"
    "note('start'); time.sleep(float(sys.argv[1])); note('end')\n"
)


def write_runset(
    directory: Path,
    count: int,
    sleep: float = 0.2,
    persona: int = 0,
    exclusive: int | None = None,
) -> Path:
    """``count`` flows; the first ``persona`` of them (every sixth) sign in as alice; flow
    number ``exclusive`` is exclusive."""
    python = json.dumps(sys.executable)
    script = directory / "flow.py"
    script.write_text(FLOW)
    text = '[runset]\nname = "queued"\n\n[personas.alice]\nusername = "alice"\n'
    alice = 0
    for index in range(count):
        text += f'\n[[flows]]\nname = "f{index:02d}"\n'
        text += f'command = [{python}, "flow.py", "{sleep}"]\n'
        if index == exclusive:
            text += "exclusive = true\n"
        if alice < persona and index % 6 == 0:
            text += 'persona = "alice"\n'
            alice += 1
    path = directory / "run-set.toml"
    path.write_text(text)
    return path


def session(
    runset: Path,
    server: RedisServer,
    queue: str | None,
    who: str,
    *extra: str,
    workers: int | None = 2,
) -> subprocess.Popen[str]:
    base = runset.parent
    lock_dir = base / f"locks-{who}"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        "COUNTER": str(base / "counter"),
        "WHO": who,
        "RUNSET_LOCK_DIR": str(lock_dir),
        "RUNSET_COORDINATOR_TTL": "2",
    }
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
        "--runset", str(runset),
        "--runset-coordinator", server.url, "--runset-output", str(base / f"out-{who}"),
        "-q", *extra,
    ]  # fmt: skip
    if workers is not None:
        argv += ["--runset-workers", str(workers)]
    if queue is not None:
        argv += ["--runset-queue", queue]
    return subprocess.Popen(
        argv, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def notes(base: Path) -> list[tuple[str, str, str, float]]:
    counter = base / "counter"
    if not counter.exists():
        return []
    rows = []
    for line in counter.read_text().splitlines():
        name, who, what, moment = line.split()
        rows.append((name, who, what, float(moment)))
    return rows


def queue_cli(server: RedisServer, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_runset.cli", "queue", server.url, name, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def persona_intervals(
    rows: list[tuple[str, str, str, float]], names: set[str]
) -> list[tuple[float, float]]:
    starts = {(n, w): t for n, w, what, t in rows if what == "start" and n in names}
    ends = {(n, w): t for n, w, what, t in rows if what == "end" and n in names}
    return sorted((starts[k], ends[k]) for k in starts if k in ends)


def test_two_sessions_share_one_queue_each_flow_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """24 flows, two sessions of 2 workers (the second 2 s late): each flow runs exactly
    once, both exit 0, the reports merge into the whole run, alice is never used twice."""
    runset = write_runset(tmp_path, 24, sleep=0.3, persona=4)
    first = session(runset, redis_server, "pipeline-1", "a")
    time.sleep(2)
    second = session(runset, redis_server, "pipeline-1", "b")
    (code_a, out_a), (code_b, out_b) = finish(first), finish(second)
    assert (code_a, code_b) == (0, 0), out_a + out_b
    ended = [name for name, _, what, _ in notes(tmp_path) if what == "end"]
    assert sorted(ended) == [f"f{i:02d}" for i in range(24)]
    reports = [load_report(tmp_path / f"out-{who}" / "latest") for who in "ab"]
    assert sum(len(r["flows"]) for r in reports) == 24
    assert all(r["flows"] for r in reports), "the late session ran nothing"
    assert {r["queue"]["role"] for r in reports} == {"seeded", "joined"}
    assert all(r["queue"]["total"] == 24 for r in reports)
    assert "deselected" in out_b
    merged = tmp_path / "merged.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest_runset.cli", "merge",
         *[str(tmp_path / f"out-{who}" / "latest" / "report.json") for who in "ab"],
         "-o", str(merged)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    full = json.loads(merged.read_text())
    assert [f["name"] for f in full["flows"]] == [f"f{i:02d}" for i in range(24)]
    assert full["summary"]["passed"] == 24
    alice = {f["name"] for r in reports for f in r["flows"] if f.get("persona") == "alice"}
    assert len(alice) == 4
    intervals = persona_intervals(notes(tmp_path), alice)
    assert len(intervals) == 4
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start, f"alice used by two flows at once: {intervals}"
    waited = queue_cli(redis_server, "pipeline-1", "--wait")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "24 done (24 passed)" in waited.stdout


def test_a_session_on_gateways_of_its_own_pulls_from_the_queue_too(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """One session on the plugin's pool, one on ``--runset-tx`` gateways: both pull from the
    queue and every flow runs once."""
    runset = write_runset(tmp_path, 12, sleep=0.3)
    pool = session(runset, redis_server, "pipeline-tx", "a")
    gateways = session(
        runset, redis_server, "pipeline-tx", "b", "--runset-tx", "2*popen", workers=None
    )
    (code_a, out_a), (code_b, out_b) = finish(pool), finish(gateways)
    assert (code_a, code_b) == (0, 0), out_a + out_b
    ended = sorted(name for name, _, what, _ in notes(tmp_path) if what == "end")
    assert ended == [f"f{i:02d}" for i in range(12)]
    ran_by = {who for _, who, what, _ in notes(tmp_path) if what == "end"}
    assert ran_by == {"a", "b"}, "one session ran nothing"


def test_sessions_share_a_queue_over_tls(tmp_path: Path, tls_redis_server: RedisServer) -> None:
    """The queue, its Lua scripts and the leases work the same over ``rediss://``."""
    runset = write_runset(tmp_path, 8, sleep=0.2, persona=2)
    first = session(runset, tls_redis_server, "pipeline-tls", "a")
    second = session(runset, tls_redis_server, "pipeline-tls", "b")
    (code_a, out_a), (code_b, out_b) = finish(first), finish(second)
    assert (code_a, code_b) == (0, 0), out_a + out_b
    ended = sorted(name for name, _, what, _ in notes(tmp_path) if what == "end")
    assert ended == [f"f{i:02d}" for i in range(8)]
    assert "in clear" not in out_a + out_b


def test_persona_is_leased_across_sessions_without_a_queue(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two sessions with lock directories of their own (two machines) each run four alice
    flows: with a coordinator, no two of the eight overlap."""
    runset = write_runset(tmp_path, 24, sleep=0.3, persona=4)
    selection = ("-k", "f00 or f06 or f12 or f18")
    first = session(runset, redis_server, None, "a", *selection)
    second = session(runset, redis_server, None, "b", *selection)
    (code_a, out_a), (code_b, out_b) = finish(first), finish(second)
    assert (code_a, code_b) == (0, 0), out_a + out_b
    rows = notes(tmp_path)
    intervals = persona_intervals(rows, {"f00", "f06", "f12", "f18"})
    assert len(intervals) == 8
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start, f"alice used by two sessions at once: {intervals}"


def test_an_exclusive_flow_runs_alone_across_sessions(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two sessions of 2 workers on one queue: while the exclusive flow runs, no other flow
    of either session runs (start and end offsets from the counter file)."""
    runset = write_runset(tmp_path, 12, sleep=0.4, exclusive=5)
    first = session(runset, redis_server, "excl", "a")
    second = session(runset, redis_server, "excl", "b")
    (code_a, out_a), (code_b, out_b) = finish(first), finish(second)
    assert (code_a, code_b) == (0, 0), out_a + out_b
    rows = notes(tmp_path)
    assert sorted(n for n, _, what, _ in rows if what == "end") == [f"f{i:02d}" for i in range(12)]
    assert {w for _, w, _, _ in rows} == {"a", "b"}, "one session ran everything"
    spans = {
        (name, who): (start, end)
        for (name, who), start in {(n, w): t for n, w, what, t in rows if what == "start"}.items()
        for end in [next(t for n, w, what, t in rows if (n, w, what) == (name, who, "end"))]
    }
    (alone_start, alone_end) = next(span for (name, _), span in spans.items() if name == "f05")
    others = {key: span for key, span in spans.items() if key[0] != "f05"}
    for key, (start, end) in others.items():
        assert end <= alone_start or start >= alone_end, (
            f"{key} ran from {start} to {end}, next to the exclusive flow "
            f"({alone_start} to {alone_end})"
        )
    # Flows ran on both sides of it: it waited for running ones, and held the others back.
    assert any(end <= alone_start for _, end in others.values())
    assert any(start >= alone_end for start, _ in others.values())


# Fails in session "a" once session "b" has started a flow; passes in "b".
FLAKY = (
    "import os, sys, time\n"
    "def note(what):\n"
    "    with open(os.environ['COUNTER'], 'a') as f:\n"
    "        who = os.environ['WHO']\n"
    "        f.write(f\"{os.environ['RUNSET_FLOW']} {who} {what} {time.time()}\\n\")\n"
    "note('start')\n"
    "if os.environ['WHO'] == 'a':\n"
    "    deadline = time.time() + 30\n"
    "    while time.time() < deadline and ' b ' not in open(os.environ['COUNTER']).read():\n"
    "        time.sleep(0.05)\n"
    "note('end')\n"
    "sys.exit(1 if os.environ['WHO'] == 'a' else 0)\n"
)
# pytest-rerunfailures' options as it registers them (it need not be installed).
RERUNS_STAND_IN = """
def pytest_addoption(parser):
    group = parser.getgroup("rerunfailures")
    group._addoption("--reruns", dest="reruns", type=int)
    group._addoption("--reruns-delay", dest="reruns_delay", type=float)
"""


def test_a_retry_run_by_another_session_is_flaky_and_waits_its_delay(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Session a's attempt of f00 fails; its retry goes back to the queue and may not be
    pulled for --reruns-delay 1 s (session a's free worker takes f03 instead), then session b
    runs it and it passes: the merged report has f00 flaky, with both attempts."""
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "flaky.py").write_text(FLAKY)
    (tmp_path / "conftest.py").write_text(RERUNS_STAND_IN)
    python = json.dumps(sys.executable)
    text = '[runset]\nname = "retried"\n'
    text += f'\n[[flows]]\nname = "f00"\nretries = 1\ncommand = [{python}, "flaky.py"]\n'
    for index, sleep in ((1, 5.0), (2, 0.3), (3, 5.0)):
        text += f'\n[[flows]]\nname = "f{index:02d}"\ncommand = [{python}, "flow.py", "{sleep}"]\n'
    runset = tmp_path / "run-set.toml"
    runset.write_text(text)
    delay = ("--reruns-delay", "1")
    first = session(runset, redis_server, "retry", "a", *delay)
    assert wait_for(lambda: ("f00", "a", "start") in {r[:3] for r in notes(tmp_path)})
    second = session(runset, redis_server, "retry", "b", *delay, workers=1)
    (code_a, out_a), (code_b, out_b) = finish(first), finish(second)
    assert (code_a, code_b) == (0, 0), out_a + out_b
    rows = notes(tmp_path)
    failed_end = next(t for n, w, what, t in rows if (n, w, what) == ("f00", "a", "end"))
    retried = next(t for n, w, what, t in rows if (n, w, what) == ("f00", "b", "start"))
    assert retried - failed_end >= 0.95, "the retry was pulled before its delay"
    assert ("f00", "a", "start") in {r[:3] for r in rows}
    assert [w for n, w, what, _ in rows if n == "f00" and what == "start"] == ["a", "b"]
    reports = {who: load_report(tmp_path / f"out-{who}" / "latest") for who in "ab"}
    assert "f00" not in {f["name"] for f in reports["a"]["flows"]}
    merged = tmp_path / "merged.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest_runset.cli", "merge",
         *[str(tmp_path / f"out-{who}" / "latest" / "report.json") for who in "ab"],
         "-o", str(merged)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    full = json.loads(merged.read_text())
    flow = next(f for f in full["flows"] if f["name"] == "f00")
    assert (flow["status"], flow["flaky"], flow["attempts"]) == ("passed", True, 2)
    assert [h["status"] for h in flow["history"]] == ["failed", "passed"]
    assert "on " in flow["history"][0]["worker"]
    assert full["summary"]["passed"] == 4
    # The failed attempt's own directory stays in session a's run directory.
    assert (tmp_path / "out-a" / "latest" / "f00" / "result.json").exists()


def test_a_killed_session_loses_its_flows_to_the_others(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """SIGKILL one of two sessions while it runs a flow: the other runs that flow too, every
    flow of the queue ends, and ``queue --wait`` reports it."""
    runset = write_runset(tmp_path, 8, sleep=1.0)
    doomed = session(runset, redis_server, "kill", "a")
    survivor = session(runset, redis_server, "kill", "b")
    assert wait_for(lambda: any(w == "a" and s == "start" for _, w, s, _ in notes(tmp_path)))
    time.sleep(0.2)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    killed = {n for n, w, s, _ in notes(tmp_path) if w == "a" and s == "start"} - {
        n for n, w, s, _ in notes(tmp_path) if w == "a" and s == "end"
    }
    assert killed
    code, out = finish(survivor)
    assert code == 0, out
    rows = notes(tmp_path)
    ended = {n for n, _, s, _ in rows if s == "end"}
    assert ended == {f"f{i:02d}" for i in range(8)}
    ran_again = {n for n, w, s, _ in rows if w == "b" and s == "end"}
    assert killed <= ran_again
    waited = queue_cli(redis_server, "kill", "--wait", "--timeout", "30")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "8 done" in waited.stdout
    assert "ended" in waited.stdout


def test_a_session_of_another_selection_is_refused(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    runset = write_runset(tmp_path, 3, sleep=0.05)
    code, out = finish(session(runset, redis_server, "shared", "a"))
    assert code == 0, out
    code, out = finish(session(runset, redis_server, "shared", "b", "-k", "f01"))
    assert code == 4, out
    errors = [line for line in out.splitlines() if "holds another run-set or selection" in line]
    assert len(errors) == 1, out
    assert "Traceback" not in out


def test_coordinator_stopped_mid_run_then_resumed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis dies: the running flows finish and are journaled, one line says how to go on;
    resuming against a restarted (empty) Redis completes the run."""
    runset = write_runset(tmp_path, 8, sleep=0.5)
    running = session(runset, redis_server, "outage", "a")
    assert wait_for(lambda: sum(s == "end" for _, _, s, _ in notes(tmp_path)) >= 2)
    redis_server.stop()
    code, out = finish(running)
    assert code == 2, out
    lines = [line for line in out.splitlines() if "unreachable" in line and "resume" in line]
    assert len(lines) == 1, out
    rows = notes(tmp_path)
    started = [n for n, _, s, _ in rows if s == "start"]
    ended = {n for n, _, s, _ in rows if s == "end"}
    assert set(started) == ended, "a running flow was not let finish"
    report = load_report(tmp_path / "out-a" / "latest")
    passed = {f["name"] for f in report["flows"] if f["status"] == "passed"}
    assert passed == ended
    run_id = report["run_id"]
    redis_server.start()
    code, out = finish(session(runset, redis_server, "outage", "a", "--runset-resume", run_id))
    assert code == 0, out
    final = load_report(tmp_path / "out-a" / run_id)
    assert {f["name"]: f["status"] for f in final["flows"]} == {
        f"f{i:02d}": "passed" for i in range(8)
    }
    ran = [n for n, _, s, _ in notes(tmp_path) if s == "end"]
    assert sorted(ran) == [f"f{i:02d}" for i in range(8)], "a journaled flow ran again"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0"])
def test_an_unreachable_coordinator_is_one_line(tmp_path: Path, url: str) -> None:
    runset = write_runset(tmp_path, 1, sleep=0.01)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--runset", str(runset),
         "--runset-coordinator", url.replace("redis://", "redis://:s3cret-pw@"),
         "--runset-queue", "q"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 4, run.stdout + run.stderr
    assert "unreachable" in run.stderr
    assert "s3cret-pw" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr

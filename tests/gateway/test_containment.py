"""Containment of one attempt, with real processes in real cgroups (this host's hybrid tree:
v2 at /sys/fs/cgroup/unified, v1 memory and pids) and with the process-group tier."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from conftest import process_alive, wait_for
from pytest_runset.gateway import cgroups, containment
from pytest_runset.gateway.containment import Containment, memory_text, record_usage
from pytest_runset.gateway.protocol import AttemptResult

HAS_CGROUPS = not isinstance(cgroups.discover(), str)
needs_cgroups = pytest.mark.skipif(
    not HAS_CGROUPS, reason=f"this host offers no writable cgroup v2 tree: {cgroups.discover()}"
)


@pytest.fixture
def run_id() -> Iterator[str]:
    value = f"rs-test-{uuid.uuid4().hex[:12]}"
    yield value
    tree = cgroups.discover()
    if not isinstance(tree, str):
        for directory in cgroups.Group(tree, containment.run_group_name(value)).directories:
            cgroups.kill_directory_tree(directory)
            cgroups.remove_directory_tree(directory)


def _spawn(attempt: containment.Attempt, script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script],
        start_new_session=True,
        preexec_fn=attempt.preexec(),  # noqa: PLW1509 - the tier's own hook under test
    )


# Leaves a child in a new session with an empty environment, prints its pid, exits.
ESCAPE = r"""
import subprocess
child = subprocess.Popen(
    ["env", "-i", "sleep", "600"], start_new_session=True, stdout=subprocess.DEVNULL
)
print(child.pid, flush=True)
"""


def _escape(attempt: containment.Attempt) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", ESCAPE],
        start_new_session=True,
        stdout=subprocess.PIPE,
        preexec_fn=attempt.preexec(),  # noqa: PLW1509
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    proc.wait(timeout=30)
    return int(line.strip())


def test_memory_text_reads_like_a_limit() -> None:
    assert memory_text(512 << 20) == "512 MiB"
    assert memory_text(2 << 30) == "2 GiB"
    assert memory_text(1536 << 10) == "1.5 MiB"
    assert memory_text(100) == "100 bytes"


@needs_cgroups
def test_cgroup_tier_kills_an_escaped_child_and_measures_the_tree(run_id: str) -> None:
    keeper = Containment("auto", run_id)
    assert keeper.tier == "cgroup"
    attempt = keeper.attempt("c1", memory_max=None, pids_max=None, in_process=False)
    attempt.start()
    assert attempt.group is not None
    assert os.path.isdir(attempt.group.v2)
    escaped = _escape(attempt)
    assert process_alive(escaped)
    assert escaped in attempt.group.pids_inside()
    usage = attempt.finish()
    assert usage.killed >= 1
    assert wait_for(lambda: not process_alive(escaped), 10)
    assert usage.cpu_s > 0
    assert usage.peak_memory_bytes is not None
    assert usage.peak_memory_bytes > 0
    assert not os.path.exists(attempt.group.v2)


@needs_cgroups
def test_a_memory_limit_kills_the_flow_and_says_so(run_id: str) -> None:
    keeper = Containment("cgroup", run_id)
    attempt = keeper.attempt("c2", memory_max=64 << 20, pids_max=None, in_process=False)
    attempt.start()
    assert attempt.limits_enforced
    proc = _spawn(attempt, "x = bytearray(300 * 1024 * 1024)")
    assert proc.wait(timeout=60) < 0
    usage = attempt.finish()
    assert usage.oom_killed
    result: AttemptResult = {"status": "failed", "message": "killed by SIGKILL"}
    record_usage(result, attempt, usage, 0.0)
    assert result["status"] == "failed"
    assert result["message"].startswith("memory limit 64 MiB exceeded")
    assert result["containment"] == "cgroup"


@needs_cgroups
def test_a_pids_limit_stops_a_fork_bomb(run_id: str) -> None:
    keeper = Containment("cgroup", run_id)
    attempt = keeper.attempt("c3", memory_max=None, pids_max=8, in_process=False)
    attempt.start()
    script = (
        "import os, time\n"
        "made = 0\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        made += 1\n"
        "    except OSError:\n"
        "        break\n"
        "print(made)\n"
        "os._exit(0 if made < 50 else 1)\n"
    )
    proc = _spawn(attempt, script)
    assert proc.wait(timeout=60) == 0
    assert attempt.finish().killed >= 1


@needs_cgroups
def test_a_callable_attempt_runs_the_worker_inside_the_group(run_id: str) -> None:
    keeper = Containment("cgroup", run_id)
    attempt = keeper.attempt("c4", memory_max=None, pids_max=None, in_process=True)
    attempt.start()
    assert attempt.group is not None
    assert os.getpid() in attempt.group.pids_inside()
    child = subprocess.Popen(["sleep", "600"])
    usage = attempt.finish()
    assert os.getpid() not in attempt.group.pids_inside()
    assert child.wait(timeout=10) < 0
    assert usage.killed == 1


@needs_cgroups
def test_freezing_stops_the_flow_and_thawing_lets_it_go_on(
    run_id: str, tmp_path: os.PathLike[str]
) -> None:
    keeper = Containment("cgroup", run_id)
    attempt = keeper.attempt("c5", memory_max=None, pids_max=None, in_process=False)
    attempt.start()
    ticks = os.path.join(tmp_path, "ticks")
    proc = _spawn(
        attempt,
        f"import time\nwhile True:\n    open({ticks!r}, 'a').write('x')\n    time.sleep(0.05)\n",
    )
    assert wait_for(lambda: os.path.exists(ticks), 30)
    attempt.pause(True)
    time.sleep(0.3)
    frozen_at = os.path.getsize(ticks)
    time.sleep(1.0)
    assert os.path.getsize(ticks) == frozen_at
    attempt.pause(False)
    assert wait_for(lambda: os.path.getsize(ticks) > frozen_at, 30)
    attempt.finish()
    assert proc.wait(timeout=10) < 0


# The process-group tier makes its process a child subreaper for good: run it in a child, not
# in the test session (whose orphans would otherwise become its zombies).
PROCESS_GROUP_CHECK = r"""
import json, os, subprocess, sys, time
from pytest_runset.gateway.containment import Containment
keeper = Containment("process-group", sys.argv[1])
attempt = keeper.attempt("p1", memory_max=int(sys.argv[2]) or None, pids_max=None, in_process=False)
attempt.start()
proc = subprocess.Popen(
    [sys.executable, "-c", "import subprocess; print(subprocess.Popen(['env', '-i', 'sleep', "
     "'600'], start_new_session=True, stdout=subprocess.DEVNULL).pid, flush=True)"],
    start_new_session=True, stdout=subprocess.PIPE, preexec_fn=attempt.preexec(),
)
escaped = int(proc.stdout.readline())
proc.stdout.close()
proc.wait()
deadline = time.monotonic() + 10
def parent(pid):
    stat = open(f"/proc/{pid}/stat", "rb").read()
    return int(stat[stat.rfind(b")") + 2 :].split()[1])
while parent(escaped) != os.getpid() and time.monotonic() < deadline:
    time.sleep(0.01)
adopted = parent(escaped) == os.getpid()
usage = attempt.finish()
print(json.dumps({"tier": keeper.tier, "adopted": adopted, "escaped": escaped,
                  "killed": usage.killed, "enforced": usage.limits_enforced,
                  "cpu_s": usage.cpu_s}))
"""


def _process_group_run(run_id: str, memory_max: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROCESS_GROUP_CHECK, run_id, str(memory_max)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    import json

    data: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def test_process_group_tier_kills_what_the_worker_adopted(run_id: str) -> None:
    data = _process_group_run(run_id, 0)
    assert data["tier"] == "process-group"
    # The escaped process's parent exited: the worker (a child subreaper) adopted it.
    assert data["adopted"] is True
    assert isinstance(data["killed"], int)
    assert data["killed"] >= 1
    escaped = data["escaped"]
    assert isinstance(escaped, int)
    assert wait_for(lambda: not process_alive(escaped), 10)
    assert data["enforced"] is True


def test_process_group_tier_says_limits_are_not_enforced(run_id: str) -> None:
    assert _process_group_run(run_id, 64 << 20)["enforced"] is False

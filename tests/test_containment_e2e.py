"""Containment end to end, with real processes and real cgroups (docs: DESIGN "Containment,
resources and live control").

What this proves:

- every escape a flow can try (a daemon with a cleared environment, a new session that
  ignores signals, a process that erases its cookie from its own environ, a flea that forks
  and exits in a tight loop, a flow that SIGKILLs its worker and pytest) leaves no process
  5 s after the run, 10 times out of 10, in the ``cgroup`` tier, and the ones the
  ``process-group`` tier promises to catch leave none there either;
- SIGHUP and SIGKILL of pytest while a service, a sidecar and flows run leave no process of
  the run, and SIGHUP, also as a real hang-up (the terminal goes away), still writes a
  complete report and exits 2;
- pytest SIGKILLed (alone, or with its watchdog and workers) and its run resumed at once, or
  a new run started, never has two live copies of a flow, nor a persona held by the dead run
  and by the new one at the same time;
- usage is measured (peak memory, CPU seconds) for command and callable flows, ``memory_max``
  and ``pids_max`` are enforced in the cgroup tier, and reported as not enforced (with one
  warning) in the process-group tier;
- ``--runset-containment cgroup`` where cgroups cannot be used is a one-line usage error, and
  ``auto`` falls back to the process-group tier there.

Leftover processes are found by a marker unique to each test, trial and case in their argv,
since several of them clear their environment (and with it the cookie).
"""

from __future__ import annotations

import functools
import json
import os
import pty
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import flows_by_name, load_report, processes_with_cookie_prefix, wait_for

PYTHON = sys.executable
# "5 s after the run": how long a leftover may take to die once its run is over.
LEFTOVER_S = 5.0
STATUSES = {
    "passed",
    "failed",
    "error",
    "timeout",
    "skipped",
    "xfailed",
    "xpassed",
    "interrupted",
    "not_run",
}
MiB = 1 << 20

# Escapes (a), (b) and (e), in shell. $1: case, $2: marker (the escapee's argv), $3: go file.
ESCAPE_SH = r"""
case_="$1"; marker="$2"; dir="$RUNSET_FLOW_DIR"
# Waits until the escapee is `sleep MARKER` for good (exec'ed, environment cleared), then
# records its environment and session for the test.
await_escapee() {
  i=0
  while [ $i -lt 3000 ]; do
    pid=$(cat "$dir/escapee.pid" 2>/dev/null)
    if [ -n "$pid" ] && [ "$(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null)" = "sleep $marker " ]
    then
      tr '\0' '\n' < /proc/$pid/environ > "$dir/escapee.environ"
      cut -d' ' -f6 /proc/$pid/stat > "$dir/escapee.sid"
      cut -d' ' -f6 /proc/$$/stat > "$dir/flow.sid"
      return 0
    fi
    i=$((i+1)); sleep 0.01
  done
  echo "the escapee never became 'sleep $marker'"; exit 1
}
case "$case_" in
a)
  env -i sh -c 'sleep "$0" & echo $! > "$1"' "$marker" "$dir/escapee.pid"
  await_escapee ;;
b)
  setsid sh -c 'trap "" TERM HUP; echo $$ > "$1"; exec env -i sleep "$0"' \
    "$marker" "$dir/escapee.pid" &
  await_escapee ;;
e)
  trap "" TERM HUP INT
  sleep "$marker" &
  echo $! > "$dir/escapee.pid"
  controller=$(ps -o ppid= -p $PPID | tr -d ' ')
  echo $PPID > "$dir/worker.pid"
  echo "$controller" > "$dir/controller.pid"
  i=0
  while [ ! -e "$3" ] && [ $i -lt 1200 ]; do i=$((i+1)); sleep 0.05; done
  # The controller first: once the worker is dead this shell may be killed with it.
  kill -9 "$controller" $PPID
  wait ;;
esac
"""

# Escapes (c) and (d), in Python. argv: case, marker.
ESCAPES_PY = r'''
import os, signal, subprocess, sys, time
from pathlib import Path

case, marker = sys.argv[1], sys.argv[2]
COOKIE = b"RUNSET_FLOW_ID="


def scrub_own_environ() -> None:
    """Overwrite RUNSET_FLOW_ID=... in this process's environ block (what /proc shows)."""
    with open("/proc/self/stat", "rb") as handle:
        stat = handle.read()
    fields = stat[stat.rfind(b")") + 2 :].split()
    start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        block = mem.read(end - start)
        at = block.find(COOKIE)
        while at != -1:
            stop = block.index(b"\0", at)
            mem.seek(start + at)
            mem.write(b"X" * (stop - at))
            at = block.find(COOKIE, stop)


if case == "c-child":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    scrub_own_environ()
    Path(sys.argv[3]).write_text(str(os.getpid()))
    time.sleep(600)
elif case == "d-child":
    Path(sys.argv[3]).write_text(str(os.getpid()))
    # Never one pid for long; gives up by itself after a minute, whatever happens.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.fork():
            os._exit(0)
    os._exit(0)
else:
    flow_dir = Path(os.environ["RUNSET_FLOW_DIR"])
    pid_file = flow_dir / "escapee.pid"
    subprocess.Popen(
        [sys.executable, __file__, f"{case}-child", marker, str(pid_file)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        if time.monotonic() > deadline:
            sys.exit("the escapee never started")
        time.sleep(0.01)
    pid = int(pid_file.read_text())
    if case == "c":
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        (flow_dir / "escapee.environ").write_bytes(environ)
        if COOKIE in environ:
            sys.exit(f"the cookie is still in /proc/{pid}/environ")
    else:
        time.sleep(0.3)  # the flea is well under way
'''

# The escapes: case -> flow name.
ESCAPES = {
    "a": "left-behind",
    "b": "new-session",
    "c": "scrubbed-cookie",
    "d": "flea",
    "e": "kills-controller",
}


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lock_dir = tmp_path / "locks"
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(lock_dir))
    return lock_dir


def cmdline(pid: int) -> bytes | None:
    """A live process's argv joined by NULs; None for a zombie or a process that is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read()
    except OSError:
        return None
    if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X"):
        return None
    return argv


def marked(needle: str) -> list[int]:
    """Live processes with ``needle`` anywhere in their argv (never this process)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            argv = cmdline(int(entry))
            if argv is not None and needle.encode() in argv:
                found.append(int(entry))
    return found


def nothing_marked(needle: str) -> bool:
    return not marked(needle)


def kill_marked(needle: str) -> None:
    """Kill whatever carries ``needle`` (a flea needs several rounds)."""
    deadline = time.monotonic() + 10
    while (pids := marked(needle)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


@pytest.fixture
def token() -> Iterator[str]:
    """Digits unique to this test; every marker of the test ends with them. Whatever carries
    them when the test ends is killed (a failed test must not leave sleepers behind)."""
    value = str(random.SystemRandom().randrange(10**6, 10**7))
    yield value
    kill_marked(f".{value}")


def marker(case: str, trial: int, token: str) -> str:
    """``6<case><trial>.<token>``: a sleep of over ten minutes, unique to case and trial."""
    return f"6{'abcdefgh'.index(case) + 1}{trial}.{token}"


def escape_runset(cases: str, trial: int, token: str, go: Path) -> str:
    flows = []
    for case in cases:
        mark = marker(case, trial, token)
        if case in "abe":
            command = ["sh", "escape.sh", case, mark, str(go)]
        else:
            command = [PYTHON, "escapes.py", case, mark]
        flows.append(f'[[flows]]\nname = "{ESCAPES[case]}"\ncommand = {json.dumps(command)}\n')
    return "[runset]\ntimeout = 120\nkill_grace = 1\n" + "".join(flows)


def result_json(run_dir: Path, slug: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run_dir / slug / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def output_of(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=30)
    return out.decode(errors="replace")


def run_escape_trials(
    pytester: pytest.Pytester,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    token: str,
    tier: str,
    cases: str,
    trials: int,
) -> list[str]:
    """Run the escapes ``trials`` times; return what went wrong, one line per problem."""
    (pytester.path / "escape.sh").write_text(ESCAPE_SH, encoding="utf-8")
    (pytester.path / "escapes.py").write_text(ESCAPES_PY, encoding="utf-8")
    problems: list[str] = []
    for trial in range(trials):
        problems += [
            f"{tier} trial {trial}: {problem}"
            for problem in escape_trial(pytester, spawn_pytest, token, tier, cases, trial)
        ]
        kill_marked(f".{token}")
    return problems


def escape_trial(
    pytester: pytest.Pytester,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    token: str,
    tier: str,
    cases: str,
    trial: int,
) -> list[str]:
    """One run of the escapes; what went wrong."""
    problems: list[str] = []
    run_id = f"{tier}-{trial}"
    run_dir = pytester.path / "runset-results" / run_id
    go = pytester.path / f"go-{trial}"
    (pytester.path / "run-set.toml").write_text(escape_runset(cases, trial, token, go))
    proc = spawn_pytest(
        "--runset", "run-set.toml", "--runset-run-id", run_id, "-n", str(len(cases)),
        "--runset-containment", tier,
    )  # fmt: skip
    passing = [case for case in cases if case != "e"]
    slugs = [ESCAPES[case] for case in passing]
    done = wait_for(
        lambda: (
            proc.poll() is not None or all(result_json(run_dir, slug) is not None for slug in slugs)
        ),
        90,
    )
    if not done or ("e" in cases and proc.poll() is not None):
        return [f"the flows did not finish:\n{output_of(proc)}"]
    # (a)-(d): the flow passed; its escapee was killed when the flow ended.
    for case in passing:
        slug, mark = ESCAPES[case], marker(case, trial, token)
        result = result_json(run_dir, slug) or {}
        flow_dir = run_dir / slug
        if result.get("status") != "passed":
            problems.append(f"({case}) {slug} {result.get('status')}: {result.get('message')}")
        if not wait_for(functools.partial(nothing_marked, mark), LEFTOVER_S):
            problems.append(
                f"({case}) {slug}: {len(marked(mark))} process(es) left {LEFTOVER_S:g}s "
                f"after the flow ended: {describe(marked(mark))}"
            )
        elif result.get("leftover_processes", 0) < 1:
            problems.append(f"({case}) {slug}: its killed escapee is not counted")
        environ = flow_dir / "escapee.environ"
        if case in "abc" and (not environ.exists() or b"RUNSET_FLOW_ID=" in environ.read_bytes()):
            problems.append(f"({case}) {slug}: the escapee kept its cookie (not an escape)")
        if case == "b" and (
            (flow_dir / "escapee.sid").read_text() == (flow_dir / "flow.sid").read_text()
        ):
            problems.append(f"(b) {slug}: the escapee is in the flow's session (not an escape)")
    if "e" not in cases:
        out = output_of_finished(proc)
        return problems + ([f"exit {proc.returncode}:\n{out}"] if proc.returncode else [])
    # (e): the flow kills its worker and pytest, once the others are done.
    slug, mark = ESCAPES["e"], marker("e", trial, token)
    controller = run_dir / slug / "controller.pid"
    if not wait_for(lambda: controller.exists() and controller.read_text().strip() != "", 60):
        return [*problems, f"(e) never started:\n{output_of(proc)}"]
    if int(controller.read_text()) != proc.pid:
        problems.append("(e): the worker's parent is not pytest")
    if not marked(mark):
        problems.append("(e): its sleeper is not running before the kill (not an escape)")
    go.write_text("")
    proc.wait(60)
    if proc.returncode != -signal.SIGKILL:
        problems.append(f"(e): pytest was not killed:\n{output_of(proc)}")
    # The run is over the moment pytest dies.
    if not wait_for(lambda: not marked(mark), LEFTOVER_S):
        problems.append(
            f"(e) {slug}: {len(marked(mark))} process(es) left {LEFTOVER_S:g}s after pytest "
            f"was killed: {describe(marked(mark))}"
        )
    if processes_with_cookie_prefix(f"{run_id}."):
        problems.append(
            f"processes with the run's cookie survive pytest: "
            f"{describe(processes_with_cookie_prefix(f'{run_id}.'))}"
        )
    return problems


def output_of_finished(proc: subprocess.Popen[bytes]) -> str:
    out, _ = proc.communicate(timeout=90)
    return out.decode(errors="replace")


def describe(pids: list[int]) -> str:
    """A few processes, with their argv, for a failure message."""
    shown = []
    for pid in pids[:5]:
        argv = (cmdline(pid) or b"").replace(b"\0", b" ").decode(errors="replace")
        shown.append(f"{pid} {argv!r}")
    return ", ".join(shown)


def test_no_escape_survives_the_cgroup_tier_ten_times_out_of_ten(
    pytester: pytest.Pytester,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    token: str,
) -> None:
    problems = run_escape_trials(pytester, spawn_pytest, token, "cgroup", "abcde", 10)
    assert not problems, "\n".join(problems)


def test_process_group_tier_catches_daemons_new_sessions_and_a_dead_controller(
    pytester: pytest.Pytester,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    token: str,
) -> None:
    problems = run_escape_trials(pytester, spawn_pytest, token, "process-group", "abe", 10)
    assert not problems, "\n".join(problems)


# A service that serves HTTP on its port and leaves a daemon of its own behind: a new session,
# no environment, deaf to SIGTERM and SIGHUP. argv: port, marker.
SERVICE_PY = r"""
import http.server, subprocess, sys
port, mark = int(sys.argv[1]), sys.argv[2]
subprocess.Popen(["setsid", "sh", "-c", 'trap "" TERM HUP; exec env -i sleep "$0"', mark])
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""
# A flow that leaves a deaf daemon with no environment in a session of its own, says it
# started, then sleeps. argv: marker of the daemon, marker of the flow.
HANGING_FLOW = json.dumps(
    [
        "sh",
        "-c",
        'setsid sh -c \'trap "" TERM HUP; exec env -i sleep "$0"\' "$0" & '
        'touch "$RUNSET_FLOW_DIR/started"; exec sleep "$1"',
    ]
)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_pytest_hung_up_or_killed_leaves_no_process_of_its_run(
    pytester: pytest.Pytester,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    token: str,
    signum: signal.Signals,
) -> None:
    (pytester.path / "service.py").write_text(SERVICE_PY, encoding="utf-8")
    marks = {name: f"60{i}.{token}" for i, name in enumerate(["svc", "car", "d1", "f1", "f2"])}
    hanging = json.loads(HANGING_FLOW)
    (pytester.path / "run-set.toml").write_text(
        f"""
[runset]
concurrency = 2
kill_grace = 1
base_url = "http://127.0.0.1:{{services.app.port}}/"
[[runset.services]]
name = "app"
command = ["{{python}}", "service.py", "{{port}}", "{marks["svc"]}"]
ready = "http://127.0.0.1:{{port}}/"
[[flows]]
name = "hangs with a sidecar"
command = {json.dumps([*hanging, marks["d1"], marks["f1"]])}
[flows.sidecar]
command = ["{{python}}", "service.py", "{{port}}", "{marks["car"]}"]
ready = "http://127.0.0.1:{{port}}/"
[[flows]]
name = "quick"
command = ["true"]
[[flows]]
name = "hangs"
command = ["sleep", "{marks["f2"]}"]
[[flows]]
name = "never starts"
command = ["true"]
""",
        encoding="utf-8",
    )
    run_id = signum.name.lower()
    run_dir = pytester.path / "runset-results" / run_id
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", run_id)
    running = wait_for(
        lambda: (
            all(marked(mark) for mark in marks.values())
            and (run_dir / "hangs-with-a-sidecar" / "started").exists()
        ),
        60,
    )
    assert running, output_of(proc)
    proc.send_signal(signum)
    out = output_of_finished(proc)
    # Whatever of the run still runs has LEFTOVER_S from pytest's end to die.
    gone = wait_for(
        lambda: not marked(f".{token}") and not processes_with_cookie_prefix(f"{run_id}."),
        LEFTOVER_S,
    )
    assert gone, describe(marked(f".{token}") + processes_with_cookie_prefix(f"{run_id}."))
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return
    assert proc.returncode == 2, out
    report = load_report(run_dir)
    assert report["status"] == "interrupted"
    assert report["containment"] == "cgroup"  # auto, where cgroups work
    flows = flows_by_name(report)
    assert set(flows) == {"hangs with a sidecar", "quick", "hangs", "never starts"}
    assert all(flow["status"] in STATUSES for flow in report["flows"]), report["flows"]
    assert flows["quick"]["status"] == "passed"
    assert flows["hangs with a sidecar"]["status"] == "interrupted"
    assert flows["hangs"]["status"] == "interrupted"
    assert flows["never starts"]["status"] == "not_run"
    assert "Traceback" not in out


def test_closing_the_terminal_writes_the_report_exits_2_and_leaves_no_process(
    pytester: pytest.Pytester, token: str
) -> None:
    # The SIGHUP of a real hang-up: pytest is the session leader of a terminal that goes
    # away, so that, besides the signal, everything it writes to it from then on fails (EIO).
    marks = [f"61{i}.{token}" for i in range(2)]
    (pytester.path / "run-set.toml").write_text(
        "[runset]\nconcurrency = 2\nkill_grace = 1\n"
        '[[flows]]\nname = "quick"\ncommand = ["true"]\n'
        + "".join(
            f'[[flows]]\nname = "hangs {i}"\ncommand = ["sleep", "{marks[i]}"]\n' for i in range(2)
        )
        + '[[flows]]\nname = "never starts"\ncommand = ["true"]\n',
        encoding="utf-8",
    )
    run_dir = pytester.path / "runset-results" / "tty"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            ["setsid", "--ctty", PYTHON, "-m", "pytest", "-p", "no:cacheprovider",
             "--runset", "run-set.toml", "--runset-run-id", "tty"],
            stdin=slave, stdout=slave, stderr=slave, cwd=pytester.path,
        )  # fmt: skip
    finally:
        os.close(slave)
    shown = bytearray()

    def running() -> bool:
        # Read what pytest writes meanwhile, as a terminal does.
        while select.select([master], [], [], 0)[0]:
            try:
                shown.extend(os.read(master, 65536))
            except OSError:
                break
        journal = run_dir / "journal.jsonl"
        return (
            all(marked(mark) for mark in marks)
            and journal.exists()
            and '"quick"' in journal.read_text()
        )

    try:
        assert wait_for(running, 60), shown.decode(errors="replace")
    finally:
        os.close(master)  # the terminal goes away
    try:
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    gone = wait_for(
        lambda: not marked(f".{token}") and not processes_with_cookie_prefix("tty."), LEFTOVER_S
    )
    assert gone, describe(marked(f".{token}") + processes_with_cookie_prefix("tty."))
    assert proc.returncode == 2
    report = load_report(run_dir)
    assert report["status"] == "interrupted"
    assert {flow["name"]: flow["status"] for flow in report["flows"]} == {
        "quick": "passed",
        "hangs 0": "interrupted",
        "hangs 1": "interrupted",
        "never starts": "not_run",
    }


# A flow that must never have two live copies, nor share its persona with a live process.
# It takes an flock per flow name and per persona, holding each for as long as it (or its
# daemon) lives; finding one taken is written down as OVERLAP. In "hold" mode it leaves the
# locks to a daemon that clears its environment, leaves the session and ignores SIGTERM and
# SIGHUP, then waits; in "quick" mode it passes at once. argv: name, shared dir, marker.
GUARD_PY = r"""
import fcntl, os, signal, sys, time
from pathlib import Path

name, shared, mark = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
run = os.environ["RUNSET_RUN_ID"]


def note(text):
    with open(shared / "log", "a") as handle:
        handle.write(f"{text} {name} {os.getpid()} {time.monotonic()}\n")


def take(key):
    fd = os.open(shared / f"{key}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note(f"OVERLAP {key}")
    return fd


locks = [take(f"flow-{name}")]
if os.environ.get("RUNSET_PERSONA"):
    locks.append(take(f"persona-{os.environ['RUNSET_PERSONA']}"))
note("start")
if (shared / "mode").read_text().strip() == "hold":
    if os.fork() == 0:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for fd in locks:
            os.set_inheritable(fd, True)
        note("daemon")
        os.execv("/usr/bin/env", ["env", "-i", sys.executable, "-c",
                                  "import time; time.sleep(120)", mark])
    time.sleep(120)
else:
    time.sleep(0.2)
note("end")
"""


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def watchdog_of(run_id: str) -> list[int]:
    return [
        pid
        for pid in marked(f"pytest_runset.gateway.watchdog\0{run_id}\0")
        if cmdline(pid) is not None
    ]


def test_a_run_killed_and_resumed_at_once_never_runs_a_flow_or_a_persona_twice(
    pytester: pytest.Pytester,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    token: str,
) -> None:
    """Ten trials. Even ones: pytest is SIGKILLed (its watchdog cleans up). Odd ones: its
    watchdog and workers are SIGKILLed with it, so only the next session can find the dead
    run's daemons; it is a resume of the dead run, or (trials 3 and 7) a new run that wants
    the same persona."""
    (pytester.path / "guard.py").write_text(GUARD_PY, encoding="utf-8")
    for trial in range(10):
        problems = guard_trial(pytester, spawn_pytest, token, trial)
        assert not problems, "\n".join(problems)


def guard_trial(
    pytester: pytest.Pytester,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    token: str,
    trial: int,
) -> list[str]:
    shared = pytester.path / f"shared-{trial}"
    shared.mkdir()
    mark = f"6{trial}.{token}"
    flows = "".join(
        f'[[flows]]\nname = "{name}"\n{persona}'
        f'command = ["{PYTHON}", "guard.py", "{name}", "{shared}", "{mark}"]\n'
        for name, persona in [
            ("holder", 'persona = "alice"\n'),
            ("free", ""),
            ("second", 'persona = "alice"\n'),
        ]
    )
    (pytester.path / "run-set.toml").write_text(
        '[runset]\ntimeout = 60\nkill_grace = 1\n[personas.alice]\nusername = "alice"\n' + flows,
        encoding="utf-8",
    )
    (shared / "mode").write_text("hold")
    run_id = f"dies-{trial}"
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", run_id, "-n", "2")
    log = shared / "log"
    holding = wait_for(lambda: log.exists() and log.read_text().count("daemon ") == 2, 60)
    if not holding:
        return [f"trial {trial}: the flows never held their locks:\n{output_of(proc)}"]
    (shared / "mode").write_text("quick")
    everything = trial % 2 == 1
    if everything:
        # The watchdog first: it must not get the chance to clean up.
        for pid in [*watchdog_of(run_id), *children(proc.pid)]:
            os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait(30)
    fresh = trial in (3, 7)
    if fresh:
        then = pytester.runpytest_subprocess(
            "--runset", "run-set.toml", "--runset-run-id", f"fresh-{trial}", "-n", "2",
            "-p", "no:cacheprovider",
        )  # fmt: skip
        report_dir = pytester.path / "runset-results" / f"fresh-{trial}"
    else:
        then = pytester.runpytest_subprocess(
            "--runset", "run-set.toml", "--runset-resume", "last", "-n", "2",
            "-p", "no:cacheprovider",
        )  # fmt: skip
        report_dir = pytester.path / "runset-results" / run_id
    problems = []
    lines = log.read_text().splitlines()
    overlaps = [line for line in lines if line.startswith("OVERLAP")]
    if overlaps:
        problems.append(f"trial {trial}: two live copies at once: {overlaps}\nlog: {lines}")
    if then.ret != 0:
        problems.append(f"trial {trial}: the next session exited {then.ret}:\n{then.stdout.str()}")
        return problems
    statuses = {f["name"]: f["status"] for f in load_report(report_dir)["flows"]}
    if statuses != {"holder": "passed", "free": "passed", "second": "passed"}:
        problems.append(f"trial {trial}: {statuses}")
    said = [line for line in then.stdout.lines if line.startswith("runset: killed ")]
    if everything and not any(f"left running by run {run_id}, whose" in line for line in said):
        problems.append(f"trial {trial}: no line says what of {run_id} was killed: {said}")
    if marked(mark):
        problems.append(f"trial {trial}: still running: {describe(marked(mark))}")
    return problems


def alloc_script(mib: int) -> str:
    return f"b = bytearray({mib} * 2**20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n"


SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\n"
# Forks until the kernel refuses (then fails); every child keeps forking too (until a minute
# has passed, whatever happens).
FORK_BOMB = r"""
import os, sys, time
deadline = time.monotonic() + 60
parent, children = os.getpid(), 0
while time.monotonic() < deadline:
    try:
        pid = os.fork()
    except OSError as exc:
        if os.getpid() == parent:
            sys.exit(f"fork failed after {children} children: {exc}")
        time.sleep(0.01)
        continue
    if pid and os.getpid() == parent:
        children += 1
os._exit(0)
"""


def write_scripts(directory: Path) -> None:
    for name, text in {
        "alloc200.py": alloc_script(200),
        "alloc20.py": alloc_script(20),
        "spin.py": SPIN,
        "bomb.py": FORK_BOMB,
        # Callable flows run inside the worker: the same measures and limits apply.
        "in_worker.py": (
            "def allocate():\n"
            + "".join(f"    {line}\n" for line in alloc_script(200).splitlines())
            + "\n\ndef spin():\n"
            + "".join(f"    {line}\n" for line in SPIN.splitlines())
        ),
    }.items():
        (directory / name).write_text(text, encoding="utf-8")


def test_usage_is_measured_and_limits_are_enforced_in_the_cgroup_tier(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_scripts(pytester.path)
    write_runset(
        f"""
[runset]
timeout = 120
[[flows]]
name = "allocates 200 MiB"
command = ["{PYTHON}", "alloc200.py"]
[[flows]]
name = "spins 0.5 s"
command = ["{PYTHON}", "spin.py"]
[[flows]]
name = "over its memory limit"
memory_max = "100MiB"
command = ["{PYTHON}", "alloc200.py"]
[[flows]]
name = "under its memory limit"
memory_max = "100MiB"
command = ["{PYTHON}", "alloc20.py"]
[[flows]]
name = "fork bomb"
pids_max = 20
command = ["{PYTHON}", "bomb.py"]
[[flows]]
name = "plain"
command = ["true"]
[[flows]]
name = "callable allocates 200 MiB"
callable = "in_worker:allocate"
[[flows]]
name = "callable spins 0.5 s"
callable = "in_worker:spin"
[[flows]]
name = "callable over its memory limit"
memory_max = "100MiB"
callable = "in_worker:allocate"
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "res", "-n", "3",
        "--runset-containment", "cgroup", "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    report = load_report(pytester.path / "runset-results" / "res")
    assert report["containment"] == "cgroup"
    assert report["limits_enforced"] is True
    flows = flows_by_name(report)
    statuses = {name: flow["status"] for name, flow in flows.items()}
    assert statuses == {
        "allocates 200 MiB": "passed",
        "spins 0.5 s": "passed",
        "over its memory limit": "failed",
        "under its memory limit": "passed",
        "fork bomb": "failed",
        "plain": "passed",
        "callable allocates 200 MiB": "passed",
        "callable spins 0.5 s": "passed",
        "callable over its memory limit": "failed",
    }, {name: flow["message"] for name, flow in flows.items()}
    for kind in ("", "callable "):
        assert flows[f"{kind}allocates 200 MiB"]["resources"]["peak_memory_bytes"] >= 150 * MiB
        assert 0.35 <= flows[f"{kind}spins 0.5 s"]["resources"]["cpu_s"] <= 1.5
        message = flows[f"{kind}over its memory limit"]["message"]
        assert message.startswith("memory limit 100 MiB exceeded"), message
    assert (
        "fork failed"
        in (pytester.path / "runset-results" / "res" / "fork-bomb" / "stderr.log").read_text()
    )
    for flow in report["flows"]:
        assert set(flow["resources"]) == {"cpu_s", "peak_memory_bytes"}
        assert flow["resources"]["cpu_s"] >= 0
        if flow["name"] == "callable over its memory limit":
            continue  # its worker was killed with it: see the test below
        attempt = json.loads(
            (pytester.path / "runset-results" / "res" / flow["dir"] / "result.json").read_text()
        )
        assert attempt["resources"] == flow["resources"]
        assert attempt["containment"] == "cgroup"


def test_a_callable_killed_with_its_worker_for_its_memory_limit_still_has_its_result_json(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    # A callable runs inside the worker, so the kernel kills the worker with it: the flow's
    # directory must still hold result.json with its status, message and usage.
    write_scripts(pytester.path)
    write_runset(
        '[[flows]]\nname = "hog"\nmemory_max = "100MiB"\ncallable = "in_worker:allocate"\n'
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "oom", "--runset-containment", "cgroup",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    run_dir = pytester.path / "runset-results" / "oom"
    flow = flows_by_name(load_report(run_dir))["hog"]
    assert flow["status"] == "failed"
    assert flow["message"].startswith("memory limit 100 MiB exceeded")
    result_file = run_dir / "hog" / "result.json"
    assert result_file.exists(), sorted(p.name for p in (run_dir / "hog").iterdir())
    attempt = json.loads(result_file.read_text())
    assert attempt["status"] == "failed"
    assert attempt["message"].startswith("memory limit 100 MiB exceeded")
    assert attempt["resources"] == flow["resources"]
    assert attempt["containment"] == "cgroup"


def test_process_group_tier_warns_once_that_limits_are_not_enforced_and_still_measures(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_scripts(pytester.path)
    write_runset(
        f"""
[runset]
memory_max = "100MiB"
pids_max = 20
[[flows]]
name = "spins"
command = ["{PYTHON}", "spin.py"]
[[flows]]
name = "allocates 200 MiB"
command = ["{PYTHON}", "alloc200.py"]
[[flows]]
name = "spins in a shell"
command = ["sh", "-c", "{PYTHON} spin.py"]
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "pg", "-n", "2",
        "--runset-containment", "process-group", "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    warnings = [line for line in result.stdout.lines if "not enforced" in line]
    assert len(warnings) == 1, result.stdout.str()
    report = load_report(pytester.path / "runset-results" / "pg")
    assert report["containment"] == "process-group"
    assert report["limits_enforced"] is False
    for flow in report["flows"]:
        assert flow["status"] == "passed"
        assert flow["resources"]["cpu_s"] > 0, flow
    flows = flows_by_name(report)
    assert flows["spins"]["resources"]["cpu_s"] >= 0.35
    assert flows["spins in a shell"]["resources"]["cpu_s"] >= 0.35


def test_where_cgroups_cannot_work_cgroup_is_a_one_line_usage_error_and_auto_falls_back(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root and unshare(1) to make the cgroup tree read-only for one process")
    v2 = next(
        (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
         if " - cgroup2 " in line),
        None,
    )  # fmt: skip
    if v2 is None:
        pytest.skip("no cgroup v2 hierarchy is mounted here")
    write_runset('[[flows]]\nname = "a"\ncommand = ["true"]\n')
    (pytester.path / "in-file.toml").write_text(
        '[runset]\ncontainment = "cgroup"\n[[flows]]\nname = "a"\ncommand = ["true"]\n'
    )
    # A mount namespace of its own where the cgroup v2 tree is read-only: as for a user
    # without a delegated subtree, no group can be made.
    read_only = f'mount --bind {v2} {v2} && mount -o remount,bind,ro {v2} && exec "$@"'
    for args, source in [
        (["run-set.toml", "--runset-containment", "cgroup"], "--runset-containment cgroup"),
        (["in-file.toml"], "in-file.toml"),
    ]:
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", read_only, "sh", PYTHON, "-m", "pytest",
             "-p", "no:cacheprovider", "--runset", *args],
            cwd=pytester.path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 4, (proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert source in lines[0]
        assert "cgroups cannot be used here" in lines[0]
        assert "not writable" in lines[0]
        assert not list((pytester.path / "runset-results").glob("*/report.json"))
    # The default, auto, falls back to the process-group tier there, and says so.
    (pytester.path / "limited.toml").write_text(
        '[runset]\nmemory_max = "100MiB"\n[[flows]]\nname = "a"\ncommand = ["true"]\n'
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", read_only, "sh", PYTHON, "-m", "pytest",
         "-p", "no:cacheprovider", "--runset", "limited.toml", "--runset-run-id", "auto"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    warnings = [line for line in proc.stdout.splitlines() if "not enforced" in line]
    assert len(warnings) == 1, proc.stdout
    assert "not writable" in warnings[0]
    report = load_report(pytester.path / "runset-results" / "auto")
    assert report["containment"] == "process-group"
    assert report["limits_enforced"] is False

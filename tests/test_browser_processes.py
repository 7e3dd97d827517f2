"""Browser flows and processes: hangs killed at the timeout with their browser, a browser
killed mid-flow, a frozen worker, interruption, and machines without a browser or Playwright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from browser_support import read_json, run_flows, serve_example_app

from conftest import flows_by_name, load_report, processes_with_cookie_prefix, wait_for

example_app = pytest.fixture(scope="module")(serve_example_app)

# Flows in Python that misbehave. They find their worker's browser by its cookie (the scheme
# of docs/reliability.md) and record its pids for the checks that run after them.
FLOWS_PY = r"""
import json, os, signal, time
from pathlib import Path

PREFIX = b"RUNSET_FLOW_ID="


def browser_pids(env):
    cookie = f"{env['RUNSET_RUN_ID']}.browser.{env['RUNSET_WORKER']}"
    if env.get("BROWSER_COOKIE_IS_FLOW"):
        cookie = env["RUNSET_FLOW_ID"]
    needle = PREFIX + cookie.encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                data = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if needle in data:
                found.append(int(entry))
    return found


def record(env, flow_dir):
    pids = browser_pids(env)
    assert pids, "the browser was not found by its cookie"
    (flow_dir / "browser-pids.json").write_text(json.dumps(pids))
    return pids


def sleeper(page, env, flow_dir):
    page.goto("/login")
    record(env, flow_dir)
    time.sleep(600)


def kill_my_browser(page, env, flow_dir):
    page.goto("/login")
    for pid in record(env, flow_dir):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    page.reload()


def freeze(page, env, flow_dir):
    page.goto("/login")
    record(env, flow_dir)
    os.kill(os.getpid(), signal.SIGSTOP)


def started_then_wait(page, env, flow_dir):
    page.goto("/login")
    record(env, flow_dir)
    (flow_dir / "started").write_text("yes")
    page.locator("#never").wait_for(timeout=600_000)
"""

# A command flow run right after a misbehaving one on the same slot: nothing of that flow,
# and no browser of the run at all, may still be alive. Exits 1 (and lists them) otherwise.
CHECK_PY = r"""
import json, os, sys
from pathlib import Path

run_id = os.environ["RUNSET_RUN_ID"]
run_dir = Path(os.environ["RUNSET_RUN_DIR"])
before = sys.argv[1]
prefixes = [
    f"RUNSET_FLOW_ID={run_id}.{before}.".encode(),
    f"RUNSET_FLOW_ID={run_id}.browser.".encode(),
]
alive = []
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
        stat = open(f"/proc/{entry}/stat", "rb").read()
    except OSError:
        continue
    if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X"):
        continue
    if any(var.startswith(p) for var in env for p in prefixes):
        alive.append(int(entry))
recorded = run_dir / before / "browser-pids.json"
pids = json.loads(recorded.read_text()) if recorded.exists() else []
result = run_dir / before / "result.json"
if result.exists():
    pids += json.loads(result.read_text()).get("browser", {}).get("pids", [])
assert pids, "no browser pids were recorded by " + before
still = [
    pid
    for pid in pids
    if os.path.exists(f"/proc/{pid}")
    and open(f"/proc/{pid}/stat", "rb").read().split(b") ")[-1][:1] not in (b"Z", b"X")
]
found = {"alive": alive, "still": still}
Path(os.environ["RUNSET_FLOW_DIR"], "found.json").write_text(json.dumps(found))
sys.exit(1 if alive or still else 0)
"""


@pytest.fixture
def flow_files(pytester: pytest.Pytester) -> None:
    (pytester.path / "misbehave.py").write_text(FLOWS_PY, encoding="utf-8")
    (pytester.path / "check.py").write_text(CHECK_PY, encoding="utf-8")


def _check(after: str) -> str:
    command = f'[{sys.executable!r}, "check.py", "{after}"]'
    return f'[[flows]]\nname = "check {after}"\ncommand = {command}\n'


AFTER = """
[[flows]]
name = "after"
steps = [{ goto = "/login" }, { expect_title = "Sign in - Example Shop" }]
"""


def test_hung_browser_flows_are_killed_with_their_browser(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    example_app: str,
    flow_files: None,
) -> None:
    write_runset(
        """
[runset]
concurrency = 1
kill_grace = 1
[[flows]]
name = "hangs in a step"
timeout = 5
steps = [{ goto = "/login" }, { wait_for = "#never", timeout = "1h" }]
"""
        + _check("hangs-in-a-step")
        + """
[[flows]]
name = "hangs in python"
timeout = 5
callable = "misbehave:sleeper"
"""
        + _check("hangs-in-python")
        + """
[[flows]]
name = "freezes its worker"
timeout = 4
kill_grace = 0.5
callable = "misbehave:freeze"
"""
        + _check("freezes-its-worker")
        + AFTER
    )
    # The backstop comes 3 s after timeout + kill_grace (10 s by default).
    pytester.makeini("[pytest]\nrunset_backstop_margin = 3\n")
    result, report, run_dir = run_flows(pytester, "hang", base_url=example_app)
    flows = flows_by_name(report)
    assert result.ret == 1
    for name in ("check hangs-in-a-step", "check hangs-in-python", "check freezes-its-worker"):
        found = read_json(run_dir / flows[name]["dir"] / "found.json")
        assert flows[name]["status"] == "passed", (name, found)

    # A step waiting "1h" is cut at the flow's 5 s, with its screenshot and trace.
    step = flows["hangs in a step"]
    assert step["status"] == "timeout"
    assert step["message"] == 'timeout after 5s in step 2/2 (wait_for "#never")'
    assert step["duration_s"] < 5 + 1 + 5
    assert (run_dir / "hangs-in-a-step" / "failure.png").exists()
    assert (run_dir / "hangs-in-a-step" / "trace.zip").exists()

    # Python that sleeps cannot be interrupted: its browser is killed after the grace, and
    # its worker, whose thread is lost, is replaced.
    python = flows["hangs in python"]
    assert python["status"] == "timeout"
    assert python["message"] == "timeout after 5s"
    assert any("worker is replaced" in warning for warning in python["warnings"])
    assert flows["check hangs-in-python"]["worker"] != python["worker"]

    # A frozen worker hits the controller's backstop, which kills its browser by its cookie.
    frozen = flows["freezes its worker"]
    assert frozen["status"] == "timeout"
    assert "unresponsive" in frozen["message"]

    # Each slot's next browser flow launches a new browser and passes.
    after = flows["after"]
    assert after["status"] == "passed", after["message"]
    assert read_json(run_dir / "after" / "result.json")["browser"]["launched"] is True
    assert processes_with_cookie_prefix("hang.") == []


def test_process_isolation_hang_leaves_no_browser(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    example_app: str,
    flow_files: None,
) -> None:
    write_runset(
        """
[runset]
concurrency = 1
kill_grace = 0.5
browser_isolation = "process"
[[flows]]
name = "hangs in python"
timeout = 4
callable = "misbehave:sleeper"
env = { BROWSER_COOKIE_IS_FLOW = "1" }
"""
        + _check("hangs-in-python")
        + AFTER
    )
    result, report, run_dir = run_flows(pytester, "phang", base_url=example_app)
    flows = flows_by_name(report)
    assert flows["hangs in python"]["status"] == "timeout"
    assert flows["check hangs-in-python"]["status"] == "passed", read_json(
        run_dir / "check-hangs-in-python" / "found.json"
    )
    assert flows["after"]["status"] == "passed"
    assert result.ret == 1
    assert processes_with_cookie_prefix("phang.") == []


def test_browser_killed_mid_flow_fails_it_and_the_next_flow_relaunches(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    example_app: str,
    flow_files: None,
) -> None:
    write_runset(
        """
[runset]
concurrency = 1
[[flows]]
name = "killer"
callable = "misbehave:kill_my_browser"
"""
        + AFTER
    )
    result, report, run_dir = run_flows(pytester, "kill", base_url=example_app)
    flows = flows_by_name(report)
    killer = flows["killer"]
    assert killer["status"] == "failed"
    assert "closed" in killer["message"], killer["message"]
    after = flows["after"]
    assert after["status"] == "passed", after["message"]
    assert after["worker"] == killer["worker"]
    info = read_json(run_dir / "after" / "result.json")["browser"]
    assert info["launched"] is True
    assert not set(info["pids"]) & set(
        json.loads((run_dir / "killer" / "browser-pids.json").read_text())
    )
    assert result.ret == 1


def test_interrupt_stops_browser_flows_and_their_browsers(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
    example_app: str,
    flow_files: None,
) -> None:
    write_runset(
        """
[runset]
concurrency = 2
kill_grace = 1
[[flows]]
name = "waits one"
callable = "misbehave:started_then_wait"
[[flows]]
name = "waits two"
steps = [{ goto = "/login" }, { wait_for = "#never", timeout = "10m" }]
[[flows]]
name = "never started"
command = ["true"]
"""
    )
    run_dir = pytester.path / "runset-results" / "int"
    proc = spawn_pytest(
        "--runset", "run-set.toml", "--runset-run-id", "int", "--runset-base-url", example_app
    )
    assert wait_for((run_dir / "waits-one" / "started").exists, 60)
    assert wait_for(lambda: len(processes_with_cookie_prefix("int.browser.")) > 0, 30)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 2, output
    flows = flows_by_name(load_report(run_dir))
    assert flows["waits one"]["status"] == "interrupted"
    assert flows["waits two"]["status"] == "interrupted"
    assert flows["never started"]["status"] == "not_run"
    assert wait_for(lambda: processes_with_cookie_prefix("int.") == [], 10)


NO_BROWSER_RUNSET = """
[runset]
concurrency = 2
[[flows]]
name = "steps flow"
steps = [{ goto = "/login" }]
[[flows]]
name = "page flow"
callable = "plain:with_page"
[[flows]]
name = "plain callable"
callable = "plain:without_browser"
[[flows]]
name = "command flow"
command = ["true"]
"""
PLAIN_PY = """
def with_page(page):
    page.goto("/login")


def without_browser(flow_dir):
    (flow_dir / "ran.txt").write_text("yes")
"""


def _assert_only_browser_flows_fail(
    result: pytest.RunResult, report: dict[str, object], line: str
) -> None:
    flows = flows_by_name(report)  # type: ignore[arg-type]
    assert result.ret == 1
    for name in ("steps flow", "page flow"):
        assert flows[name]["status"] == "error"
        assert flows[name]["message"].startswith(line), flows[name]["message"]
        assert "\n" not in flows[name]["message"]
    assert flows["plain callable"]["status"] == "passed"
    assert flows["command flow"]["status"] == "passed"
    output = result.stdout.str()
    assert "Traceback" not in output
    result.stdout.fnmatch_lines([f"error: {line}*"])


def test_no_browser_available_fails_browser_flows_with_one_line(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str
) -> None:
    write_runset(NO_BROWSER_RUNSET)
    (pytester.path / "plain.py").write_text(PLAIN_PY, encoding="utf-8")
    missing = str(pytester.path / "no-such-chromium")
    result, report, _ = run_flows(
        pytester, "nobrowser", "--runset-browser-executable", missing, base_url=example_app
    )
    _assert_only_browser_flows_fail(
        result,
        report,
        f"browser executable '{missing}' (--runset-browser-executable) does not exist",
    )


def test_without_playwright_browser_flows_fail_and_the_rest_works(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    example_app: str,
) -> None:
    # A package named playwright that fails to import exactly like a missing one, put first on
    # the path of pytest and of its workers (they inherit PYTHONPATH): this Python then has no
    # usable Playwright, as without the "browser" extra. The plugin must not import it itself.
    blocker = pytester.path / "blocker" / "playwright"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'playwright\'", name="playwright")\n',
        encoding="utf-8",
    )
    paths = [str(blocker.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    check = subprocess.run(
        [sys.executable, "-c", "import playwright"], capture_output=True, text=True, check=False
    )
    assert "No module named 'playwright'" in check.stderr
    write_runset(NO_BROWSER_RUNSET)
    (pytester.path / "plain.py").write_text(PLAIN_PY, encoding="utf-8")
    # pytest-playwright, when installed, imports Playwright as pytest starts.
    result, report, _ = run_flows(pytester, "nopw", "-p", "no:playwright", base_url=example_app)
    _assert_only_browser_flows_fail(result, report, "browser flows need Playwright")

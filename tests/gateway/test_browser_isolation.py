"""Warm browser, fresh context: flows on one worker share a browser process and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser_support import read_json, run_flows, serve_example_app

from conftest import flows_by_name, process_alive, wait_for

example_app = pytest.fixture(scope="module")(serve_example_app)

# Sets a cookie, a localStorage key and a session cookie (by signing in); first checks that
# none of them is there yet.
STATEFUL_STEPS = """steps = [
  { goto = "/prefs" },
  { expect_text = "#stored", text = "none" },
  { expect_text = "#cookie", text = "none" },
  { click = "#remember" },
  { expect_text = "#stored", text = "dark" },
  { expect_text = "#cookie", text = "dark" },
  { goto = "/items" },
  { expect_url = "/login" },
  { fill = "#username", value = "alice" },
  { fill = "#password", value = "wonderland" },
  { press = "#password", key = "Enter" },
  { expect_url = "/items" },
]"""


def _runset(isolation: str | None = None) -> str:
    header = "[runset]\nconcurrency = 1\n"
    if isolation:
        header += f'browser_isolation = "{isolation}"\n'
    return (
        header
        + f'[[flows]]\nname = "first"\n{STATEFUL_STEPS}\n'
        + f'[[flows]]\nname = "second"\n{STATEFUL_STEPS}\n'
    )


def test_two_flows_on_one_worker_share_no_state(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str
) -> None:
    write_runset(_runset())
    result, report, run_dir = run_flows(pytester, "warm", base_url=example_app)
    assert result.ret == 0, result.stdout.str()
    flows = flows_by_name(report)
    # Back to back on one worker: the second flow found no cookie, storage or session.
    assert flows["first"]["status"] == "passed"
    assert flows["second"]["status"] == "passed", flows["second"]["message"]
    assert flows["first"]["worker"] == flows["second"]["worker"]
    first = read_json(run_dir / "first" / "result.json")["browser"]
    second = read_json(run_dir / "second" / "result.json")["browser"]
    # ...in the same browser process, launched once.
    assert first["launched"] is True
    assert second["launched"] is False
    assert first["pids"] == second["pids"]
    assert first["cookie"] == second["cookie"] == f"warm.browser.{flows['first']['worker']}"


def test_process_isolation_gives_every_flow_its_own_browser(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str
) -> None:
    write_runset(_runset("process"))
    result, report, run_dir = run_flows(pytester, "proc", base_url=example_app)
    assert result.ret == 0, result.stdout.str()
    flows = flows_by_name(report)
    assert flows["first"]["worker"] == flows["second"]["worker"]
    first = read_json(run_dir / "first" / "result.json")
    second = read_json(run_dir / "second" / "result.json")
    assert first["browser"]["launched"] is True
    assert second["browser"]["launched"] is True
    assert first["browser"]["isolation"] == "process"
    # The browser carries the flow's own cookie and is gone when the flow is.
    assert first["browser"]["cookie"] == first["flow_id"]
    assert not set(first["browser"]["pids"]) & set(second["browser"]["pids"])
    for pid in first["browser"]["pids"] + second["browser"]["pids"]:
        assert wait_for(lambda pid=pid: not process_alive(pid), 10), pid

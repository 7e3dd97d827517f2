"""Projects under pytest-xdist: every collected copy of a browser flow (``slug[project]``)
ends with an entry of its own slug, those an ``-x`` stop or a crashed worker left included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_report

# xdist.plugin, not xdist: see test_xdist.py.
pytest.importorskip("xdist.plugin", reason="needs pytest-xdist (tox -e xdist, .ci/run)")

PROJECTS = """
[runset]
timeout = "60s"

[[runset.projects]]
name = "desktop"
viewport = { width = 1280, height = 720 }

[[runset.projects]]
name = "mobile"
viewport = { width = 390, height = 664 }
"""
JOURNEYS = "".join(
    f'\n[[flows]]\nname = "j{n}"\nsteps = [{{ goto = "about:blank" }}]\n' for n in (1, 2)
)
# Kills its xdist worker as the item starts: what pytest-xdist reports as a crashed worker.
KILL_CONFTEST = """
import os, signal

def pytest_runtest_setup(item):
    if item.name == "j1[mobile]":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(tmp_path / "locks"))


def run(pytester: pytest.Pytester, run_id: str, *args: str) -> tuple[pytest.RunResult, Path]:
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--runset", "run-set.toml", "--runset-run-id", run_id, *args,
        timeout=240,
    )  # fmt: skip
    return result, pytester.path / "runset-results" / run_id


def flow_events(run_dir: Path) -> list[dict[str, object]]:
    lines = (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    return [event for event in map(json.loads, lines) if event.get("event") == "flow"]


def test_project_items_an_x_stop_never_started_are_not_run_under_their_own_slugs(
    pytester: pytest.Pytester,
) -> None:
    bad = '\n[[flows]]\nname = "bad"\ncommand = ["sh", "-c", "exit 3"]\n'
    after = '\n[[flows]]\nname = "after"\ncommand = ["true"]\n'
    (pytester.path / "run-set.toml").write_text(PROJECTS + bad + JOURNEYS + after)
    result, run_dir = run(pytester, "x", "-n", "2", "-x")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    report = load_report(run_dir)
    flows = report["flows"]
    # Every item has its entry, in file order, under the copy's slug and with its project.
    assert [(f["slug"], f.get("project"), f["nodeid"]) for f in flows] == [
        ("bad", None, "run-set.toml::bad"),
        ("j1-desktop", "desktop", "run-set.toml::j1[desktop]"),
        ("j1-mobile", "mobile", "run-set.toml::j1[mobile]"),
        ("j2-desktop", "desktop", "run-set.toml::j2[desktop]"),
        ("j2-mobile", "mobile", "run-set.toml::j2[mobile]"),
        ("after", None, "run-set.toml::after"),
    ]
    assert flows[0]["status"] == "failed"
    assert {f["status"] for f in flows[1:]} <= {"passed", "not_run"}
    not_run = [f for f in flows if f["status"] == "not_run"]
    assert any(f.get("project") for f in not_run), [(f["slug"], f["status"]) for f in flows]
    assert {f["message"] for f in not_run} == {"not run: dispatch stopped"}
    assert sorted(str(e["slug"]) for e in flow_events(run_dir)) == sorted(f["slug"] for f in flows)
    result.stdout.fnmatch_lines([f"runset run-set: *{len(not_run)} not run in *"])


def test_a_project_item_whose_worker_crashed_is_an_error_of_its_own_slug(
    pytester: pytest.Pytester,
) -> None:
    script = '\n[[flows]]\nname = "script"\ncommand = ["true"]\n'
    (pytester.path / "run-set.toml").write_text(PROJECTS + JOURNEYS + script)
    (pytester.path / "conftest.py").write_text(KILL_CONFTEST)
    # No browser starts: the one journey selected dies with its worker before it runs.
    result, run_dir = run(pytester, "c", "-n", "1", "-k", "j1 and mobile or script")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    flows = {f["slug"]: f for f in load_report(run_dir)["flows"]}
    assert sorted(flows) == ["j1-mobile", "script"]
    crashed = flows["j1-mobile"]
    assert (crashed["status"], crashed["project"]) == ("error", "mobile")
    assert crashed["message"].startswith("worker crashed (gw0 exited while running the flow)")
    assert crashed["nodeid"] == "run-set.toml::j1[mobile]"
    assert flows["script"]["status"] == "passed"
    assert len(flow_events(run_dir)) == 2

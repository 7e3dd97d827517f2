"""A flow's autouse and ``usefixtures`` fixtures run around it, in pytest's process, as around a
test: function-scoped ones for each flow (its own instance, while other flows run), module-scoped
ones once per run-set file, session-scoped ones once and shared with the session's tests."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_for

# Every fixture event, with whether the flow had started ("started-<slug>") and ended
# ("ended-<slug>") at that moment: fixtures are set up before a flow starts, and its own are
# torn down only once it ended.
LOGGING_CONFTEST = """
import json, pathlib, pytest

HERE = pathlib.Path(__file__).parent

def log(**event):
    with (HERE / "events.jsonl").open("a") as out:
        out.write(json.dumps(event) + "\\n")

def flow_files(request):
    slug = request.node.name
    return {
        "started": (HERE / f"started-{slug}").exists(),
        "ended": (HERE / f"ended-{slug}").exists(),
    }

@pytest.fixture(scope="session", autouse=True)
def session_wide():
    log(event="session setup")
    (HERE / "session-up").write_text("yes")
    yield
    (HERE / "session-up").unlink()
    log(event="session teardown")

@pytest.fixture(scope="module", autouse=True)
def module_wide(request):
    log(event="module setup", scope=request.scope)
    yield
    log(event="module teardown")

@pytest.fixture(autouse=True)
def per_flow(request, tmp_path):
    node = request.node.nodeid
    log(event="function setup", node=node, tmp=str(tmp_path), **flow_files(request))
    yield
    log(event="function teardown", node=node, **flow_files(request))
"""

FLOW = '''
[[flows]]
name = "{name}"
command = """
touch started-$RUNSET_SLUG; sleep {sleep}
test -f session-up && touch ended-$RUNSET_SLUG
"""
shell = true
'''


def events(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    text = (pytester.path / "events.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args)


def test_autouse_fixtures_run_around_each_flow_as_around_a_test(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    pytester.makeconftest(LOGGING_CONFTEST)
    write_runset(FLOW.format(name="slow", sleep=1) + FLOW.format(name="quick", sleep=0.2))
    write_runset(FLOW.format(name="other", sleep=0), name="more.runset.toml")
    result = run(pytester, "--runset-workers", "2")
    assert result.ret == 0, result.stdout.str()
    seen = events(pytester)
    kinds = [event["event"] for event in seen]
    assert kinds.count("session setup") == kinds.count("session teardown") == 1
    assert kinds[0] == "session setup"
    assert kinds[-1] == "session teardown"
    # Once per run-set file (pytest sees a run-set as no Python module: package scope).
    assert kinds.count("module setup") == kinds.count("module teardown") == 2
    setups = {e["node"]: e for e in seen if e["event"] == "function setup"}
    teardowns = {e["node"]: e for e in seen if e["event"] == "function teardown"}
    flows = ["run-set.toml::slow", "run-set.toml::quick", "more.runset.toml::other"]
    assert sorted(setups) == sorted(teardowns) == sorted(flows)
    for node in flows:
        # Set up before the flow started, torn down once it ended.
        assert not setups[node]["started"], setups[node]
        assert not setups[node]["ended"], setups[node]
        assert teardowns[node]["ended"], teardowns[node]
    # The flows overlapped, each with its own function-scoped fixtures.
    order = [(e["event"], e.get("node")) for e in seen]
    assert order.index(("function setup", "run-set.toml::quick")) < order.index(
        ("function teardown", "run-set.toml::slow")
    )
    assert len({setup["tmp"] for setup in setups.values()}) == 3


def test_session_fixtures_shared_with_tests_stay_up_while_flows_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    pytester.makeconftest(LOGGING_CONFTEST)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    write_runset(FLOW.format(name="long", sleep=1.5))
    result = run(pytester, "--runset-workers", "2")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*2 passed*"])
    seen = [(event["event"], event.get("node")) for event in events(pytester)]
    assert [kind for kind, _ in seen].count("session setup") == 1
    # Torn down once, after the flow's own fixtures, not after the last test: the flow found
    # it up at its end.
    assert seen[-1] == ("session teardown", None)
    assert seen.index(("session teardown", None)) > seen.index(
        ("function teardown", "run-set.toml::long")
    )


ERRORS_CONFTEST = """
import pytest

@pytest.fixture
def database():
    print("connecting")
    raise RuntimeError("database is down")

@pytest.fixture
def feature():
    pytest.skip("feature flag off")

@pytest.fixture
def cleanup():
    yield
    raise ValueError("cleanup failed")

@pytest.fixture
def dynamic(request):
    # A function-scoped fixture asked for by name: each flow still gets its own.
    path = request.getfixturevalue("tmp_path")
    (path / "mine").write_text(request.node.name)
    yield
    assert (path / "mine").read_text() == request.node.name

def pytest_collection_modifyitems(items):
    for item in items:
        for tag in ("database", "feature", "cleanup", "dynamic"):
            if item.get_closest_marker(tag):
                item.add_marker(pytest.mark.usefixtures(tag))
"""

ERRORS_RUNSET = """
[[flows]]
name = "needs database"
command = ["touch", "ran-database"]
tags = ["database"]

[[flows]]
name = "needs feature"
command = ["true"]
tags = ["feature"]

[[flows]]
name = "leaves a mess"
command = ["true"]
tags = ["cleanup"]

[[flows]]
name = "dyn 1"
command = ["sleep", "0.5"]
tags = ["dynamic"]

[[flows]]
name = "dyn 2"
command = ["sleep", "0.5"]
tags = ["dynamic"]
"""


def test_fixture_failures_end_the_flow_with_the_fixtures_message(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    pytester.makeconftest(ERRORS_CONFTEST)
    write_runset(ERRORS_RUNSET)
    result = run(pytester, "--runset-workers", "3", "--runset-run-id", "fx")
    text = result.stdout.str()
    assert result.ret == 1, text
    # A failed setup: the flow never ran, it is an error naming the fixture and where it is.
    assert not (pytester.path / "ran-database").exists()
    result.stdout.fnmatch_lines(["ERROR run-set.toml::needs-database - error: fixture 'database'*"])
    result.stdout.fnmatch_lines(
        ["error: fixture 'database' (conftest.py:3): RuntimeError: database is down"]
    )
    # ... with the user's frames and what the fixture printed, never pytest's internals.
    assert 'raise RuntimeError("database is down")' in text
    assert "connecting" in text
    for internal in ("_pytest/", "pluggy/", "flow_fixtures.py"):
        assert internal not in text
    # pytest.skip() in a fixture skips the flow; a failed teardown is a teardown error.
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] run-set.toml:*: feature flag off"])
    result.stdout.fnmatch_lines(["ERROR run-set.toml::leaves-a-mess - ValueError: cleanup failed"])
    result.stdout.fnmatch_lines(["*3 passed, 1 skipped, 2 errors*"])
    report = json.loads((pytester.path / "runset-results/fx/report.json").read_text())
    statuses = {flow["name"]: (flow["status"], flow["message"]) for flow in report["flows"]}
    assert statuses["needs database"][0] == "error"
    assert statuses["needs database"][1].startswith("fixture 'database' (conftest.py:")
    assert statuses["needs feature"] == ("skipped", "feature flag off")
    assert statuses["dyn 1"][0] == statuses["dyn 2"][0] == "passed"


def test_ctrl_c_stops_a_hung_fixture_at_once(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    pytester.makeconftest(
        """
import pathlib, time, pytest

@pytest.fixture(autouse=True)
def hangs():
    pathlib.Path("hanging").write_text("yes")
    time.sleep(600)
    yield
"""
    )
    write_runset('[[flows]]\nname = "waits"\ncommand = ["true"]\n')
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "hung")
    assert wait_for((pytester.path / "hanging").exists)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output.decode()
    report = json.loads((pytester.path / "runset-results/hung/report.json").read_text())
    assert [flow["status"] for flow in report["flows"]] == ["interrupted"]

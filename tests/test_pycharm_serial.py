"""What PyCharm's test tree receives, through a re-implementation of its serial tree manager.

PyCharm runs pytest with teamcity-messages and, without pytest-xdist, reads the messages with a
*serial* tree manager (``_jb_serial_tree_manager.py`` behind ``_jb_runner_tools.py``). It
builds the tree from flat dotted names, keeping one open branch:

- ``testStarted a.b.c`` opens the suites ``a`` and ``a.b`` (``testSuiteStarted``) below what
  is open, then the test ``c``; a name that is not below the open branch first *closes the open
  branch*, whatever is open: an unfinished test closed that way becomes a *suite*
  (``testSuiteFinished``);
- ``testFinished`` closes the open node if the name is the open branch, else does nothing;
- ``testFailed``/``testIgnored`` land on whatever node is open.

The messages come from the real teamcity-messages plugin (installed here, turned on with
``--teamcity``), parsed from pytest's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("teamcity")

RUNSET = """\
[runset]
name = "shop"
timeout = "60s"

[[flows]]
name = "slow pass"
command = ["sleep", "1.5"]

[[flows]]
name = "fails"
command = ["sh", "-c", "sleep 0.3; echo payment declined >&2; exit 1"]

[[flows]]
name = "quick"
command = ["sleep", "0.1"]
"""

_MESSAGE = re.compile(r"##teamcity\[(\w+)((?: \w+='(?:[^'|]|\|.)*')*)\s*\]")
_ATTRIBUTE = re.compile(r"(\w+)='((?:[^'|]|\|.)*)'")
_UNESCAPE = {"n": "\n", "r": "\r", "'": "'", "|": "|", "[": "[", "]": "]"}


def parse_messages(output: str) -> list[tuple[str, dict[str, str]]]:
    """Service messages as teamcity's format writes them (``|`` escapes), in output order."""
    messages = []
    for match in _MESSAGE.finditer(output):
        attributes = {
            key: re.sub(r"\|(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), value)
            for key, value in _ATTRIBUTE.findall(match.group(2))
        }
        messages.append((match.group(1), attributes))
    return messages


@dataclass
class Node:
    name: str
    kind: str  # "suite" or "test"
    children: list[Node] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


class SerialTreeManager:
    """PyCharm's serial tree: one open branch, built from flat dotted test names."""

    def __init__(self) -> None:
        self.root = Node("", "suite")
        # The open branch: names, and the nodes they opened.
        self.branch: list[str] = []
        self.nodes: list[Node] = [self.root]

    def feed(self, kind: str, attributes: dict[str, str]) -> None:
        name = attributes.get("name")
        if name is None:
            return
        parts = name.split(".")
        if kind == "testStarted":
            self._start(parts)
        elif kind == "testFinished":
            if parts == self.branch:
                self._close()
        elif kind == "testFailed":
            self.nodes[-1].failures.append(attributes.get("message", ""))
        elif kind == "testIgnored":
            self.nodes[-1].ignored.append(attributes.get("message", ""))

    def _start(self, parts: list[str]) -> None:
        while True:
            depth = len(self.branch)
            if len(parts) > depth and parts[:depth] == self.branch:
                if len(parts) == depth + 1:
                    self._open(parts[-1], "test")
                    return
                self._open(parts[depth], "suite")
                continue
            if not self.branch:
                return
            # Not below the open branch: the whole branch is closed, as suites.
            while self.branch:
                self.nodes[-1].kind = "suite"
                self._close()

    def _open(self, name: str, kind: str) -> None:
        node = Node(name, kind)
        self.nodes[-1].children.append(node)
        self.branch.append(name)
        self.nodes.append(node)

    def _close(self) -> None:
        self.branch.pop()
        self.nodes.pop()


def teamcity_run(pytester: pytest.Pytester, *args: str) -> list[tuple[str, dict[str, str]]]:
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    result = pytester.runpytest_subprocess(
        "--teamcity", "-p", "no:cacheprovider", "--runset-workers", "2", *args
    )
    assert result.ret == 1, result.stdout.str() + result.stderr.str()
    return parse_messages(result.stdout.str())


def test_each_flow_starts_and_ends_back_to_back_for_pycharms_serial_tree(
    pytester: pytest.Pytester,
) -> None:
    messages = teamcity_run(pytester)
    tests = [
        (kind, attrs) for kind, attrs in messages if kind.startswith("test") and "name" in attrs
    ]
    # Every testStarted is followed by its own end before the next one starts.
    open_test: str | None = None
    order = []
    for kind, attrs in tests:
        if kind == "testStarted":
            assert open_test is None, f"{attrs['name']} started while {open_test} runs: {tests}"
            open_test = attrs["name"]
            order.append(open_test)
        elif kind in ("testFailed", "testIgnored", "testFinished"):
            assert attrs["name"] == open_test, (kind, attrs["name"], open_test)
            if kind == "testFinished":
                open_test = None
    assert open_test is None
    # Completion order (quick and fails end before the 1.5 s flow), each flow once.
    assert sorted(order) == ["run-set_toml.fails", "run-set_toml.quick", "run-set_toml.slow-pass"]
    assert order[-1] == "run-set_toml.slow-pass"

    tree = SerialTreeManager()
    for kind, attrs in messages:
        tree.feed(kind, attrs)
    # Only the file's suite is still open (PyCharm closes it when the run ends).
    assert tree.branch == ["run-set_toml"]
    [suite] = tree.root.children
    assert (suite.name, suite.kind, suite.failures) == ("run-set_toml", "suite", [])
    flows = {node.name: node for node in suite.children}
    assert sorted(flows) == ["fails", "quick", "slow-pass"]
    assert {node.kind for node in flows.values()} == {"test"}
    # The failure is on the flow, with its location, and nowhere else.
    [failure] = flows["fails"].failures
    assert re.fullmatch(r"run-set\.toml:\d+ \(flow 'fails'\)", failure), failure
    assert flows["quick"].failures == flows["slow-pass"].failures == []
    [failed] = [attrs for kind, attrs in messages if kind == "testFailed"]
    assert failed["details"].startswith("failed: exit code 1: payment declined\n")


def test_the_live_status_still_names_running_flows_in_serial_mode(
    pytester: pytest.Pytester,
) -> None:
    """The run's status.json (what ``pytest-runset status`` and the live line read) lists a
    flow as running although pytest hears of its start only with its result."""
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    pytester.makeconftest(
        """
import json, pathlib

SEEN = []

def pytest_runset_flow_finished(config, result):
    for path in pathlib.Path("runset-results").glob("*/status.json"):
        status = json.loads(path.read_text())
        SEEN.append(sorted(flow["name"] for flow in status["running"]))

def pytest_unconfigure(config):
    pathlib.Path("seen.json").write_text(json.dumps(SEEN))
"""
    )
    result = pytester.runpytest_subprocess(
        "--teamcity", "-p", "no:cacheprovider", "--runset-workers", "2"
    )
    assert result.ret == 1
    seen = Path(pytester.path / "seen.json").read_text()
    assert "slow pass" in seen, seen

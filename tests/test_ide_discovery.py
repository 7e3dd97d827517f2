"""What VS Code's test discovery receives, through a re-implementation of its adapter's contract.

During discovery (``pytest --collect-only``) the vscode-python adapter
(``python_files/vscode_pytest/__init__.py``) learns of problems in exactly these places:

- ``pytest_exception_interact``: during discovery, the exception's ``exconly()`` (or, for an
  ``AssertionError``, the report's ``longreprtext``) joins its error list;
- ``pytest_internalerror`` and ``pytest_keyboard_interrupt``: their text joins it too;
- ``pytest_sessionfinish``: an exit status other than 0, 1 or 5 sends an "error" node first;
  then the tree built from ``session.items`` (file nodes holding their tests) is sent with
  ``status`` "error" when the error list is not empty, and the list itself.

The conftest below does the same and writes each payload it would send over the adapter's pipe
to a JSON-lines file. (The real adapter is loaded with ``-p`` and sees ``--collect-only`` in
``pytest_load_initial_conftests``; a conftest reads the same arguments in ``pytest_configure``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VSCODE_DISCOVERY = """
import json, os, pathlib
import pytest

ERRORS = []
IS_DISCOVERY = False


def pytest_configure(config):
    global IS_DISCOVERY
    IS_DISCOVERY = "--collect-only" in config.invocation_params.args


def _send(payload):
    with open(os.environ["ADAPTER_OUT"], "a") as out:
        out.write(json.dumps(payload, default=str) + "\\n")


def pytest_internalerror(excrepr, excinfo):
    ERRORS.append(excinfo.exconly() + "\\n Check Python Logs for more details.")


def pytest_keyboard_interrupt(excinfo):
    ERRORS.append(excinfo.exconly() + "\\n Check Python Logs for more details.")


def pytest_exception_interact(node, call, report):
    if not IS_DISCOVERY:
        return
    if call.excinfo and call.excinfo.typename != "AssertionError":
        if report.outcome == "skipped" and "SkipTest" in str(call):
            return
        ERRORS.append(call.excinfo.exconly() + "\\n Check Python Logs for more details.")
    else:
        ERRORS.append(report.longreprtext + "\\n Check Python Logs for more details.")


def _tree(session):
    files = {}
    for item in session.items:
        path = str(item.parent.path)
        node = files.setdefault(path, {"type_": "file", "path": path, "children": []})
        node["children"].append(
            {
                "type_": "test",
                "name": item.name,
                "id_": "::".join([str(item.path), *item.nodeid.split("::")[1:]]),
                "lineno": str(item.location[1] + 1) if item.location[1] is not None else "",
            }
        )
    return {"type_": "folder", "path": str(session.path), "children": list(files.values())}


def pytest_sessionfinish(session, exitstatus):
    if not IS_DISCOVERY:
        return
    if exitstatus not in (0, 1, 5):
        _send({"status": "error", "tests": {"type_": "error", "children": []}, "error": []})
    status = "success" if not ERRORS else "error"
    _send({"status": status, "tests": _tree(session), "error": ERRORS})
"""

BROKEN = (
    '[runset]\nname = "shop"\n\n[[flows]]\nname = "pay"\ncommand = ["true"]\ntimeout = "soon"\n'
)
BROKEN_LINE = (
    "run-set.toml: flow #1 'pay', field 'timeout': "
    "'soon' is not a duration (use seconds, or e.g. '90s', '15m', '1h30m')"
)
GOOD = """\
[[flows]]
name = "login"
command = ["true"]

[[flows]]
name = "search"
command = ["true"]
"""


def _discover(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    pytester.makeconftest(VSCODE_DISCOVERY)
    (pytester.path / "run-set.toml").write_text(BROKEN, encoding="utf-8")
    (pytester.path / "smoke.runset.toml").write_text(GOOD, encoding="utf-8")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    out = Path(pytester.path / "adapter.jsonl")
    monkeypatch.setenv("ADAPTER_OUT", str(out))
    result = pytester.runpytest_subprocess("--collect-only", "-p", "no:cacheprovider")
    # pytest's exit status for a collection error, which the adapter treats as one.
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str() + result.stderr.str()
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_discovery_lists_a_broken_run_sets_message_and_every_other_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    error_node, payload = _discover(pytester, monkeypatch)
    assert error_node["tests"]["type_"] == "error"
    assert payload["status"] == "error"
    # The one-line cause is in the error list VS Code shows, not just on the terminal; then
    # pytest's "Interrupted" (heard through pytest_keyboard_interrupt), as for a Python file
    # with a syntax error.
    cause, interrupted = payload["error"]
    assert cause.startswith(f"_pytest.nodes.Collector.CollectError: {BROKEN_LINE}\n")
    assert "Traceback" not in cause
    assert interrupted.startswith("Interrupted: 1 error during collection")
    # Every other test and run-set is still in the tree.
    tests = {
        Path(file["path"]).name: sorted(child["name"] for child in file["children"])
        for file in payload["tests"]["children"]
    }
    assert tests == {"smoke.runset.toml": ["login", "search"], "test_plain.py": ["test_plain"]}
    lines = {
        child["name"]: child["lineno"]
        for file in payload["tests"]["children"]
        for child in file["children"]
    }
    assert lines["login"] == "1"
    assert lines["search"] == "5"

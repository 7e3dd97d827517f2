"""The README's first command: the example run-set, command and browser flows against the
example app that examples/conftest.py starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from browser_support import REPO

from conftest import flows_by_name, load_report

EXAMPLE = REPO / "examples" / "run-set.toml"


def test_example_run_set_passes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EXAMPLE_APP_PORT"}
    env = {k: v for k, v in env.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--runset",
            str(EXAMPLE),
            "--runset-workers",
            "4",
            "--runset-output",
            str(tmp_path),
            "--runset-run-id",
            "example",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = load_report(tmp_path / "example")
    flows = flows_by_name(report)
    kinds = {flow["kind"] for flow in report["flows"]}
    assert kinds == {"command", "steps", "callable"}
    assert flows["skipped when no sandbox"]["status"] == "skipped"
    others = [flow for flow in report["flows"] if flow["name"] != "skipped when no sandbox"]
    assert all(flow["status"] == "passed" for flow in others), [
        (flow["name"], flow["message"]) for flow in others if flow["status"] != "passed"
    ]
    assert "sign-in/items.png" in flows["sign in"]["artifacts"]
    assert "search-the-list/search.png" in flows["search the list"]["artifacts"]
    assert "runset example: 10 passed, 1 skipped" in proc.stdout

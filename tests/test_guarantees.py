"""docs/guarantees.md: every promise names the tests that prove it, and those tests exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`(tests/[^`:]+(?:::[^`]+)?|::[^`]+)`")


def _references() -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    text = (REPO / "docs" / "guarantees.md").read_text(encoding="utf-8")
    for number, row in enumerate(text.splitlines(), start=1):
        if not row.startswith("| ") or row.startswith("| guarantee"):
            continue
        module = None
        for ref in REFERENCE.findall(row):
            if ref.startswith("tests/"):
                module, _, name = ref.partition("::")
            else:
                name = ref[2:]
            if module is not None:
                found.append((number, module, name.split("[")[0]))
    return found


def test_every_guarantee_names_at_least_one_test() -> None:
    text = (REPO / "docs" / "guarantees.md").read_text(encoding="utf-8")
    rows = [row for row in text.splitlines() if row.startswith("| ") and "|---" not in row]
    proved = {number for number, _, _ in _references()}
    lines = text.splitlines()
    unproved = [row[:60] for row in rows[1:] if lines.index(row) + 1 not in proved]
    assert unproved == []


def test_every_named_test_exists() -> None:
    missing = []
    for number, module, name in _references():
        path = REPO / module
        if not path.is_file():
            missing.append(f"line {number}: {module}")
        elif name and not re.search(rf"^def {re.escape(name)}\(", path.read_text(), re.M):
            missing.append(f"line {number}: {module}::{name}")
    assert missing == []

"""What every command shares: exit codes, the one-line usage error, tables, reading a run-set
or a report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pytest_runset.results.report_files import ReportFileError, locate_report, read_report_file
from pytest_runset.results.statuses import STATUSES

if TYPE_CHECKING:
    from pytest_runset.model.flows import RunSet

OK = 0
FAILED = 1
USAGE_ERROR = 4
DEFAULT_OUTPUT = "runset-results"
NAME_WIDTH = 40


class Usage(Exception):
    """A one-line problem with the user's input: printed to stderr, exit code 4."""


class Parser(argparse.ArgumentParser):
    """argparse with pytest's usage-error exit code (4) instead of argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters shown as escapes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Aligned plain-text columns, two spaces apart; columns in ``right`` align right."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def load_runset_file(file: str) -> RunSet:
    from pytest_runset.model.loader import (
        load_runset,
    )  # pydantic is loaded only by the commands that need it

    return load_runset(file)


def report_path(target: str, output: str | None) -> Path:
    """The report.json that ``TARGET`` means (``latest``, a run dir, a run id or a file)."""
    try:
        return locate_report(target, output, DEFAULT_OUTPUT)
    except ReportFileError as exc:
        raise Usage(str(exc)) from None


def read_report(path: Path) -> dict[str, Any]:
    try:
        return read_report_file(path)
    except ReportFileError as exc:
        raise Usage(str(exc)) from None


def text(value: object, default: str = "-") -> str:
    return default if value is None or value == "" else one_line(str(value))


def counts(report: Mapping[str, Any]) -> str:
    summary: dict[str, Any] = report.get("summary") or {}
    flows: list[dict[str, Any]] = report.get("flows", [])
    parts = []
    for status in (*STATUSES, "flaky"):
        count = summary.get(status)
        if not isinstance(count, int):
            if status == "flaky":
                count = sum(1 for flow in flows if flow.get("flaky") is True)
            else:
                count = sum(1 for flow in flows if flow.get("status") == status)
        if count:
            parts.append(f"{count} {status.replace('_', ' ')}")
    total = summary.get("total") if isinstance(summary.get("total"), int) else len(flows)
    return f"{', '.join(parts) or 'no flows'} ({total} flow{'' if total == 1 else 's'})"

"""Finding and reading a run's ``report.json`` for the command line: safely, whatever the
file holds (a FIFO, a huge file, deep nesting, NaN), with one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pytest_runset.gateway.safe_files import MAX_NESTING, UnsafeFile, nesting_depth, read_regular
from pytest_runset.results.report import LATEST_NAME, REPORT_NAME, REPORT_SCHEMA

# A report.json of 100,000 flows is some 100 MiB; flows' own metrics are at most MAX_NESTING deep.
MAX_REPORT_BYTES = 1024 * 1024 * 1024
MAX_REPORT_NESTING = MAX_NESTING + 8


class ReportFileError(Exception):
    """A report that cannot be found or read, or is not one of ours (one line)."""


def locate_report(target: str, output: str | None, default_output: str) -> Path:
    """The report.json that ``TARGET`` means: ``latest``, a run directory, a run id (under
    ``output``, else under ``default_output``) or a report file. Raises ReportFileError."""
    root = Path(output if output is not None else default_output)
    if target == LATEST_NAME:
        link = root / LATEST_NAME
        if link.is_dir():
            return link / REPORT_NAME
        if link.is_file():  # filesystems without symlinks: a plain file naming the run
            try:
                run_id = link.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ReportFileError(f"{link}: cannot read: {exc}") from None
            if not run_id or os.sep in run_id or run_id in (".", ".."):
                raise ReportFileError(f"{link}: does not name a run ({run_id!r})")
            return root / run_id / REPORT_NAME
        raise ReportFileError(
            f"{link}: no such run (no run has written a report to {root} yet; "
            "use --output DIR to name the results directory)"
        )
    path = Path(target)
    if not path.exists() and (root / target).exists():
        path = root / target  # a bare run id under the results directory
    return path / REPORT_NAME if path.is_dir() else path


def read_report_file(path: Path) -> dict[str, Any]:
    """A report.json read safely (regular file, capped, strict JSON, depth-limited) and
    checked to be one of ours. Raises ReportFileError with a one-line message."""
    try:
        text = read_regular(path, max_bytes=MAX_REPORT_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ReportFileError(f"{path}: no such report file") from None
    except IsADirectoryError:
        raise ReportFileError(f"{path}: is a directory, not a report file") from None
    except UnicodeDecodeError as exc:
        raise ReportFileError(f"{path}: not valid UTF-8 (offset {exc.start})") from None
    except UnsafeFile as exc:
        raise ReportFileError(f"{path}: cannot read: {exc}") from None
    except OSError as exc:
        raise ReportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ReportFileError(f"{path}: invalid JSON: {exc}") from None
    except (RecursionError, ValueError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ReportFileError(f"{path}: invalid JSON: {problem}") from None
    if nesting_depth(data, MAX_REPORT_NESTING) > MAX_REPORT_NESTING:
        raise ReportFileError(
            f"{path}: invalid JSON: nested more than {MAX_REPORT_NESTING} levels deep"
        )
    if not isinstance(data, dict):
        raise ReportFileError(f"{path}: not a pytest-runset report (not a JSON object)")
    schema = data.get("schema")
    if schema != REPORT_SCHEMA:
        found = f"schema {schema!r}" if schema is not None else "no 'schema' field"
        raise ReportFileError(
            f"{path}: not a pytest-runset report ({found}; expected {REPORT_SCHEMA!r})"
        )
    if not isinstance(data.get("flows", []), list) or not all(
        isinstance(flow, dict) for flow in data.get("flows", [])
    ):
        raise ReportFileError(f"{path}: field 'flows' must be a list of objects")
    for key in ("runset", "summary"):
        if not isinstance(data.get(key, {}), dict):
            raise ReportFileError(f"{path}: field {key!r} must be an object")
    return data


def _no_constant(name: str) -> float:
    """NaN and Infinity are not JSON: a report holding them is not one of ours."""
    raise ValueError(f"{name} is not a JSON number")

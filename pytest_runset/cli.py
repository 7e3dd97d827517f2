"""The ``pytest-runset`` console script: ``validate``, ``list``, ``show``, ``merge`` and the
live-run controls ``status``, ``pause``, ``unpause``, ``stop``.

Built on argparse rather than click/typer: the command must start fast (``show`` and ``merge``
do not even load pydantic) and the plugin already depends on enough. Nothing here imports pytest.
Exit codes are pytest's: 0 ok / run passed, 1 run not passed or merge conflicts, 4 usage error
(bad file, bad report, bad arguments), always with a one-line message and never a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pytest_runset import __version__
from pytest_runset.gateway.safe_files import MAX_NESTING, UnsafeFile, nesting_depth, read_regular
from pytest_runset.results.report import LATEST_NAME, REPORT_NAME, REPORT_SCHEMA
from pytest_runset.results.statuses import STATUSES

# A report.json of 100,000 flows is some 100 MiB; flows' own metrics are at most MAX_NESTING deep.
MAX_REPORT_BYTES = 1024 * 1024 * 1024
MAX_REPORT_NESTING = MAX_NESTING + 8

if TYPE_CHECKING:
    from pytest_runset.model.flows import RunSet

OK = 0
FAILED = 1
USAGE_ERROR = 4
DEFAULT_OUTPUT = "runset-results"
_NAME_WIDTH = 40


class _Usage(Exception):
    """A one-line problem with the user's input: printed to stderr, exit code 4."""


class _Parser(argparse.ArgumentParser):
    """argparse with pytest's usage-error exit code (4) instead of argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters shown as escapes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
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


def _load(file: str) -> RunSet:
    from pytest_runset.model.loader import (
        load_runset,
    )  # pydantic is loaded only by the commands that need it

    return load_runset(file)


# --- validate / list -------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from pytest_runset.model.flows import RunsetError

    code = OK
    for file in args.files:
        try:
            runset = _load(file)
        except RunsetError as exc:
            print(str(exc), file=sys.stderr)
            code = USAGE_ERROR
            continue
        count = len(runset.flows)
        print(f"{_one_line(file)}: ok ({count} flow{'' if count == 1 else 's'})")
    return code


def _seconds(value: float) -> str:
    return f"{value:g}"


def cmd_list(args: argparse.Namespace) -> int:
    from pytest_runset.model.flows import RunsetError

    try:
        runset = _load(args.file)
    except RunsetError as exc:
        print(str(exc), file=sys.stderr)
        return USAGE_ERROR
    if args.json:
        entries = [
            {
                "slug": flow.slug,
                "name": flow.name,
                "kind": flow.kind,
                "command": flow.command if isinstance(flow.command, str) else list(flow.command),
                "shell": flow.shell,
                "cwd": flow.cwd,
                "timeout_s": flow.timeout_s,
                "kill_grace_s": flow.kill_grace_s,
                "retries": flow.retries,
                "tags": list(flow.tags),
                "persona": flow.persona,
                "skip": flow.skip,
                "xfail": flow.xfail,
                "description": flow.description,
                "steps": len(flow.steps),
                "spec": flow.spec,
                "callable": flow.callable_ref,
                "browser": flow.browser,
            }
            for flow in runset.flows
        ]
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return OK
    if not runset.flows:
        print(f"{_one_line(args.file)}: no flows")
        return OK
    rows = []
    for flow in runset.flows:
        reason = f"skip: {flow.skip}" if flow.skip else f"xfail: {flow.xfail}" if flow.xfail else ""
        rows.append(
            [
                flow.slug,
                _clip(_one_line(flow.name), _NAME_WIDTH),
                flow.kind,
                _seconds(flow.timeout_s),
                str(flow.retries),
                ",".join(flow.tags) or "-",
                _one_line(flow.persona or "") or "-",
                _one_line(reason) or "-",
            ]
        )
    headers = ["SLUG", "NAME", "KIND", "TIMEOUT_S", "RETRIES", "TAGS", "PERSONA", "SKIP/XFAIL"]
    print("\n".join(_table(headers, rows, right={3, 4})))
    return OK


# --- show ------------------------------------------------------------------------------------


def _report_path(target: str, output: str | None) -> Path:
    """The report.json that ``show TARGET`` means (``latest``, a run dir, a run id or a file)."""
    root = Path(output if output is not None else DEFAULT_OUTPUT)
    if target == LATEST_NAME:
        link = root / LATEST_NAME
        if link.is_dir():
            return link / REPORT_NAME
        if link.is_file():  # filesystems without symlinks: a plain file naming the run
            try:
                run_id = link.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise _Usage(f"{link}: cannot read: {exc}") from None
            if not run_id or os.sep in run_id or run_id in (".", ".."):
                raise _Usage(f"{link}: does not name a run ({run_id!r})")
            return root / run_id / REPORT_NAME
        raise _Usage(
            f"{link}: no such run (no run has written a report to {root} yet; "
            "use --output DIR to name the results directory)"
        )
    path = Path(target)
    if not path.exists() and output is not None and (root / target).exists():
        path = root / target  # a bare run id under --output
    return path / REPORT_NAME if path.is_dir() else path


def _read_report(path: Path) -> dict[str, Any]:
    try:
        text = read_regular(path, max_bytes=MAX_REPORT_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise _Usage(f"{path}: no such report file") from None
    except IsADirectoryError:
        raise _Usage(f"{path}: is a directory, not a report file") from None
    except UnicodeDecodeError as exc:
        raise _Usage(f"{path}: not valid UTF-8 (offset {exc.start})") from None
    except UnsafeFile as exc:
        raise _Usage(f"{path}: cannot read: {exc}") from None
    except OSError as exc:
        raise _Usage(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _Usage(f"{path}: invalid JSON: {exc}") from None
    except (RecursionError, ValueError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _Usage(f"{path}: invalid JSON: {problem}") from None
    if nesting_depth(data, MAX_REPORT_NESTING) > MAX_REPORT_NESTING:
        raise _Usage(f"{path}: invalid JSON: nested more than {MAX_REPORT_NESTING} levels deep")
    if not isinstance(data, dict):
        raise _Usage(f"{path}: not a pytest-runset report (not a JSON object)")
    schema = data.get("schema")
    if schema != REPORT_SCHEMA:
        found = f"schema {schema!r}" if schema is not None else "no 'schema' field"
        raise _Usage(f"{path}: not a pytest-runset report ({found}; expected {REPORT_SCHEMA!r})")
    if not isinstance(data.get("flows", []), list) or not all(
        isinstance(flow, dict) for flow in data.get("flows", [])
    ):
        raise _Usage(f"{path}: field 'flows' must be a list of objects")
    for key in ("runset", "summary"):
        if not isinstance(data.get(key, {}), dict):
            raise _Usage(f"{path}: field {key!r} must be an object")
    return data


def _no_constant(name: str) -> float:
    """NaN and Infinity are not JSON: a report holding them is not one of ours."""
    raise ValueError(f"{name} is not a JSON number")


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: object, default: str = "-") -> str:
    return default if value is None or value == "" else _one_line(str(value))


def _counts(report: Mapping[str, Any]) -> str:
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


def cmd_show(args: argparse.Namespace) -> int:
    path = _report_path(args.target, args.output)
    report = _read_report(path)
    runset: dict[str, Any] = report.get("runset") or {}
    summary: dict[str, Any] = report.get("summary") or {}
    status = _text(report.get("status"), "unknown")
    wall = _num(report.get("wall_s"))
    workers = report.get("workers")
    efficiency = _num(summary.get("parallelism_efficiency"))
    print(f"run-set {_text(runset.get('name'))}, run {_text(report.get('run_id'))}: {status}")
    line = f"wall {f'{wall:.2f}s' if wall is not None else '-'}"
    line += f" on {_text(workers)} worker{'' if workers == 1 else 's'}"
    line += f", efficiency {f'{efficiency:.0%}' if efficiency is not None else '-'}"
    if report.get("started_at"):
        line += f", started {_text(report['started_at'])}"
    print(line)
    print(f"report: {_one_line(str(path))}")
    page = path.with_suffix(".html")
    if page.is_file():
        print(f"html: {_one_line(str(page))}")
    flows: list[dict[str, Any]] = report.get("flows", [])
    if flows:
        rows = []
        for flow in flows:
            duration = _num(flow.get("duration_s")) if flow.get("attempts") != 0 else None
            rows.append(
                [
                    _text(flow.get("status"), "?"),
                    f"{duration:.2f}s" if duration is not None else "-",
                    _text(flow.get("worker")),
                    _text(flow.get("attempts")),
                    "flaky" if flow.get("flaky") is True else "",
                    _clip(_text(flow.get("name") or flow.get("slug"), "?"), _NAME_WIDTH),
                    _text(flow.get("message"), ""),
                ]
            )
        headers = ["STATUS", "DURATION", "WORKER", "ATTEMPTS", "FLAKY", "NAME", "MESSAGE"]
        width = max(40, shutil.get_terminal_size().columns)
        print()
        print("\n".join(_clip(line, width) for line in _table(headers, rows, right={1, 3})))
    print()
    print(_counts(report))
    return OK if status == "passed" else FAILED


# --- merge -----------------------------------------------------------------------------------


def cmd_merge(args: argparse.Namespace) -> int:
    from pytest_runset.results.html import html_path_for
    from pytest_runset.results.merge import MergeError, Shard, check_report, merge_reports
    from pytest_runset.results.report import write_html_beside, write_json_atomic

    out = Path(args.output)
    if html_path_for(out) == out:
        raise _Usage(f"-o {out}: name the JSON report to write (its .html page goes beside it)")
    shards: list[Shard] = []
    seen: dict[Path, str] = {}
    for number, file in enumerate(args.reports, start=1):
        path = Path(file)
        report = _read_report(path)
        try:
            check_report(path, report)
        except MergeError as exc:
            raise _Usage(str(exc)) from None
        real = path.resolve()
        if real in seen:
            raise _Usage(f"{file}: given twice (also as {seen[real]})")
        seen[real] = file
        shards.append(Shard(path=path, report=report, number=number))
    if out.resolve() in seen:
        raise _Usage(f"-o {out}: is one of the reports being merged; choose another file")
    try:
        merged = merge_reports(shards, out, force=args.force)
    except MergeError as exc:
        raise _Usage(str(exc)) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, merged.report)
    except OSError as exc:
        raise _Usage(f"-o {out}: cannot write: {exc.strerror or exc}") from None
    for line in [*merged.notes, *merged.conflicts]:
        print(_one_line(line), file=sys.stderr)
    page = write_html_beside(merged.report, out)
    print(
        f"merged {len(shards)} report{'' if len(shards) == 1 else 's'}: "
        f"{_counts(merged.report)}, "
        f"status {merged.report['status']} -> {_one_line(str(out))}"
        + (f" (and {_one_line(str(html_path_for(out)))})" if page else "")
    )
    if merged.conflicts:
        count = len(merged.conflicts)
        print(f"{count} conflict{'' if count == 1 else 's'} between the reports", file=sys.stderr)
        return FAILED
    return OK


# --- entry -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pytest-runset",
        description="Check run-set files and read run reports of pytest-runset.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser("validate", help="check run-set files (exit 4 if any is bad)")
    validate.add_argument("files", nargs="+", metavar="FILE", help="run-set TOML file")
    validate.set_defaults(func=cmd_validate)

    listing = commands.add_parser("list", help="list the flows of a run-set file")
    listing.add_argument("file", metavar="FILE", help="run-set TOML file")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead")
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser("show", help="print a run's report.json as a table")
    show.add_argument(
        "target",
        metavar="RUN_DIR|REPORT_JSON|latest",
        help="a run directory, a report.json file, or 'latest' (the newest run in --output)",
    )
    show.add_argument(
        "--output",
        metavar="DIR",
        help=f"results directory holding the runs (default: ./{DEFAULT_OUTPUT})",
    )
    show.set_defaults(func=cmd_show)

    merge = commands.add_parser(
        "merge",
        help="combine reports of shards of one run-set into one report (exit 1 on conflicts)",
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT", help="a shard's report.json")
    merge.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="the merged report.json to write (its HTML page is written beside it)",
    )
    merge.add_argument(
        "--force",
        action="store_true",
        help="merge reports of different run-sets (or of changed run-set files) anyway",
    )
    merge.set_defaults(func=cmd_merge)

    for name, text in (
        ("status", "what a live run is doing (its final summary once it ended)"),
        ("pause", "freeze every running flow of a live run and start nothing new"),
        ("unpause", "thaw a paused run"),
        ("stop", "stop a live run as Ctrl-C does (--drain: let running flows finish)"),
    ):
        control = commands.add_parser(name, help=text)
        control.add_argument(
            "target", nargs="?" if name == "status" else None, default="latest", metavar="RUN"
        )
        control.add_argument("--output", metavar="DIR", help="results directory of the runs")
        if name == "stop":
            control.add_argument("--drain", action="store_true", help="let running flows finish")
        control.set_defaults(func=cmd_control)
    return parser


def cmd_control(args: argparse.Namespace) -> int:
    """``status``, ``pause``, ``unpause``, ``stop``: through the run directory's control files."""
    from pytest_runset.session.live_control import control_run

    run_dir = _report_path(args.target, args.output).parent
    try:
        lines, code = control_run(run_dir, args.command, drain=bool(getattr(args, "drain", False)))
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    if not lines:  # a run that ended: its report's summary
        report = _read_report(run_dir / REPORT_NAME)
        lines = [f"run {_text(report.get('run_id'))}: {_text(report.get('status'))}"]
        lines.append(_counts(report))
    print("\n".join(_one_line(line) for line in lines))
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    # Under a C or POSIX locale stdout is ASCII: "café" is printed as "caf\\xe9", never as a
    # UnicodeEncodeError (stderr already escapes what it cannot encode).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors
            return exc.code if isinstance(exc.code, int) else USAGE_ERROR
        try:
            code: int = args.func(args)
        except _Usage as exc:
            print(_one_line(str(exc)), file=sys.stderr)
            code = USAGE_ERROR
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the interpreter's final
        # flush of stdout from raising again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())

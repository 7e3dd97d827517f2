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
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pytest_runset import __version__
from pytest_runset.results.report import REPORT_NAME
from pytest_runset.results.report_files import ReportFileError, locate_report, read_report_file
from pytest_runset.results.statuses import STATUSES

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
    """The report.json that ``TARGET`` means (``latest``, a run dir, a run id or a file)."""
    try:
        return locate_report(target, output, DEFAULT_OUTPUT)
    except ReportFileError as exc:
        raise _Usage(str(exc)) from None


def _read_report(path: Path) -> dict[str, Any]:
    try:
        return read_report_file(path)
    except ReportFileError as exc:
        raise _Usage(str(exc)) from None


def _num(value: object) -> float | None:
    """A finite number of the report, else ``None`` (an integer of hundreds of digits, 1e999
    and ``true`` are not durations or sizes)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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


def _memory(value: object) -> str:
    """``200M``, ``1.5G``, ``512K``: binary units as ``ps`` and ``top`` count; ``-`` unknown."""
    size = _num(value)
    if size is None or size < 0:
        return "-"
    if size >= 1 << 30:
        gib = size / (1 << 30)
        return f"{gib:.1f}G" if gib < 10 else f"{gib:.0f}G"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.0f}M"
    return f"{size / (1 << 10):.0f}K"


def _usage(flow: Mapping[str, Any]) -> tuple[str, str]:
    """The CPU and PEAK MEM cells of a flow: ``-`` where the report does not say (a report of
    an older release, a flow that never started, a peak the process-group tier cannot tell)."""
    resources = flow.get("resources")
    if not isinstance(resources, dict) or flow.get("attempts") == 0:
        return "-", "-"
    cpu = _num(resources.get("cpu_s"))
    return (f"{cpu:.2f}s" if cpu is not None else "-"), _memory(resources.get("peak_memory_bytes"))


def _containment_line(report: Mapping[str, Any]) -> str | None:
    """``containment cgroup``, ``containment process-group, limits not enforced, paused 7s``;
    ``None`` for reports that do not say (older releases, merged reports)."""
    tier = report.get("containment")
    if not isinstance(tier, str) or not tier:
        return None
    line = f"containment {_one_line(tier)}"
    if report.get("limits_enforced") is False:
        line += ", limits not enforced"
    paused = _num(report.get("paused_s"))
    if paused is not None and paused > 0:
        line += f", paused {paused:.0f}s" if paused >= 1 else f", paused {paused:.1f}s"
    return line


def _flow_rows(flows: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for flow in flows:
        duration = _num(flow.get("duration_s")) if flow.get("attempts") != 0 else None
        rows.append(
            [
                _text(flow.get("status"), "?"),
                f"{duration:.2f}s" if duration is not None else "-",
                *_usage(flow),
                _text(flow.get("worker")),
                _text(flow.get("attempts")),
                "flaky" if flow.get("flaky") is True else "",
                _clip(_text(flow.get("name") or flow.get("slug"), "?"), _NAME_WIDTH),
                _text(flow.get("message"), ""),
            ]
        )
    return rows


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
    contained = _containment_line(report)
    if contained is not None:
        print(contained)
    print(f"report: {_one_line(str(path))}")
    page = path.with_suffix(".html")
    if page.is_file():
        print(f"html: {_one_line(str(page))}")
    flows: list[dict[str, Any]] = report.get("flows", [])
    if flows:
        headers = ["STATUS", "DURATION", "CPU", "PEAK MEM", "WORKER", "ATTEMPTS", "FLAKY", "NAME"]
        headers.append("MESSAGE")
        table = _table(headers, _flow_rows(flows), right={1, 2, 3, 5})
        width = max(40, shutil.get_terminal_size().columns)
        print()
        print("\n".join(_clip(line, width) for line in table))
    print()
    print(_counts(report))
    return OK if status == "passed" else FAILED


# --- merge -----------------------------------------------------------------------------------


def cmd_merge(args: argparse.Namespace) -> int:
    from pytest_runset.results.html import html_path_for
    from pytest_runset.results.jsonfile import write_json_atomic
    from pytest_runset.results.merge import MergeError, Shard, check_report, merge_reports
    from pytest_runset.results.report import write_html_beside

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

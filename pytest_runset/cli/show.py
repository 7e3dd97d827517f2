"""``show``: a run's report.json as a table."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping
from typing import Any

from pytest_runset.cli.common import (
    DEFAULT_OUTPUT,
    FAILED,
    NAME_WIDTH,
    OK,
    clip,
    counts,
    one_line,
    read_report,
    report_path,
    table,
    text,
)
from pytest_runset.cli.groups_table import grouping_lines, select_grouping
from pytest_runset.results.numbers import num


def _memory(value: object) -> str:
    """``200M``, ``1.5G``, ``512K``: binary units as ``ps`` and ``top`` count; ``-`` unknown."""
    size = num(value)
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
    cpu = num(resources.get("cpu_s"))
    return (f"{cpu:.2f}s" if cpu is not None else "-"), _memory(resources.get("peak_memory_bytes"))


def _containment_line(report: Mapping[str, Any]) -> str | None:
    """``containment cgroup``, ``containment process-group, limits not enforced, paused 7s``;
    ``None`` for reports that do not say (older releases, merged reports)."""
    tier = report.get("containment")
    if not isinstance(tier, str) or not tier:
        return None
    line = f"containment {one_line(tier)}"
    if report.get("limits_enforced") is False:
        line += ", limits not enforced"
    paused = num(report.get("paused_s"))
    if paused is not None and paused > 0:
        line += f", paused {paused:.0f}s" if paused >= 1 else f", paused {paused:.1f}s"
    return line


def _flow_rows(flows: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for flow in flows:
        duration = num(flow.get("duration_s")) if flow.get("attempts") != 0 else None
        rows.append(
            [
                text(flow.get("status"), "?"),
                f"{duration:.2f}s" if duration is not None else "-",
                *_usage(flow),
                text(flow.get("worker")),
                text(flow.get("attempts")),
                "flaky" if flow.get("flaky") is True else "",
                clip(text(flow.get("name") or flow.get("slug"), "?"), NAME_WIDTH),
                text(flow.get("message"), ""),
            ]
        )
    return rows


def cmd_show(args: argparse.Namespace) -> int:
    path = report_path(args.target, args.output)
    report = read_report(path)
    grouping = select_grouping(report, args.group_by) if args.group_by is not None else None
    runset: dict[str, Any] = report.get("runset") or {}
    summary: dict[str, Any] = report.get("summary") or {}
    status = text(report.get("status"), "unknown")
    wall = num(report.get("wall_s"))
    workers = report.get("workers")
    efficiency = num(summary.get("parallelism_efficiency"))
    print(f"run-set {text(runset.get('name'))}, run {text(report.get('run_id'))}: {status}")
    line = f"wall {f'{wall:.2f}s' if wall is not None else '-'}"
    line += f" on {text(workers)} worker{'' if workers == 1 else 's'}"
    line += f", efficiency {f'{efficiency:.0%}' if efficiency is not None else '-'}"
    if report.get("started_at"):
        line += f", started {text(report['started_at'])}"
    print(line)
    contained = _containment_line(report)
    if contained is not None:
        print(contained)
    print(f"report: {one_line(str(path))}")
    page = path.with_suffix(".html")
    if page.is_file():
        print(f"html: {one_line(str(page))}")
    flows: list[dict[str, Any]] = report.get("flows", [])
    if grouping is not None:
        # The groups instead of the flows: an experiment's question is which variant did better.
        print()
        print("\n".join(grouping_lines(grouping)))
    elif flows:
        headers = ["STATUS", "DURATION", "CPU", "PEAK MEM", "WORKER", "ATTEMPTS", "FLAKY", "NAME"]
        headers.append("MESSAGE")
        lines = table(headers, _flow_rows(flows), right={1, 2, 3, 5})
        width = max(40, shutil.get_terminal_size().columns)
        print()
        print("\n".join(clip(line, width) for line in lines))
    print()
    print(counts(report))
    return OK if status == "passed" else FAILED


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    show.add_argument(
        "--group-by",
        metavar="AXIS|tag",
        help="print the flows grouped by a matrix axis (or by tag) with pass rates and metric "
        "statistics, instead of the flows",
    )
    show.set_defaults(func=cmd_show)

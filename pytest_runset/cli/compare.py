"""``compare``: two runs' groups side by side, with the differences and their 95% intervals.

Exit 0, or 1 with ``--fail-on-regression`` when some group's pass rate fell significantly:
a CI step that fails a change that makes an agent (or a build, or a benchmark) worse.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pytest_runset.cli.common import (
    FAILED,
    OK,
    Usage,
    one_line,
    read_report,
    report_path,
    table,
)
from pytest_runset.cli.groups_table import figure, percent, shown_value

if TYPE_CHECKING:
    from pytest_runset.results.compare import GroupComparison, Interval
    from pytest_runset.results.formats import GroupStats


def _label(group: GroupComparison) -> str:
    if group.kind == "all":
        return "every flow"
    if group.kind == "tag":
        return f"tag {shown_value(group.value)}"
    return f"{one_line(group.by)}={shown_value(group.value)}"


def _rate(stats: GroupStats | None) -> str:
    if stats is None:
        return "-"
    counts = stats["counts"]
    decided = sum(counts.get(s, 0) for s in ("passed", "failed", "error", "timeout"))
    return f"{counts.get('passed', 0)}/{decided} {percent(stats['pass_rate'])}"


def _interval(interval: Interval | None, scale: float = 1.0) -> str:
    if interval is None:
        return "-"
    return f"[{figure(interval.low * scale)}, {figure(interval.high * scale)}]"


def _rate_rows(groups: list[GroupComparison]) -> list[list[str]]:
    rows = []
    for group in groups:
        rate = group.pass_rate
        verdict = ""
        if rate is not None and rate.significant:
            verdict = "significant drop" if rate.difference < 0 else "significant rise"
        rows.append(
            [
                _label(group),
                _rate(group.base),
                _rate(group.new),
                f"{rate.difference * 100:+.1f} pp" if rate is not None else "-",
                _interval(rate.interval, 100) if rate is not None else "-",
                verdict,
            ]
        )
    return rows


def _metric_rows(groups: list[GroupComparison]) -> list[list[str]]:
    rows = []
    for group in groups:
        for metric in group.metrics:
            if metric.base is None and metric.new is None:
                continue
            rows.append(
                [
                    _label(group),
                    one_line(metric.name),
                    figure(metric.base["mean"]) if metric.base else "-",
                    figure(metric.new["mean"]) if metric.new else "-",
                    f"{metric.difference:+.4g}" if metric.difference is not None else "-",
                    _interval(metric.interval),
                    "significant" if metric.significant else "",
                ]
            )
    return rows


def cmd_compare(args: argparse.Namespace) -> int:
    from pytest_runset.results.compare import compare_reports

    paths = [report_path(target, args.output) for target in (args.base, args.new)]
    base, new = (read_report(path) for path in paths)
    comparison = compare_reports(base, new, args.group_by)
    if args.group_by is not None and args.group_by not in comparison.available:
        have = ", ".join(one_line(by) for by in comparison.available)
        raise Usage(
            f"--group-by {one_line(args.group_by)}: neither report has such a matrix axis or tags "
            + (f"(they have: {have})" if have else "(no flow has a matrix or tags)")
        )
    for name, path, report in (("base", paths[0], base), ("new", paths[1], new)):
        flows = report.get("flows")
        count = len(flows) if isinstance(flows, list) else 0
        print(
            f"{name}: {one_line(str(path))} (run {one_line(str(report.get('run_id', '?')))}, "
            f"{count} flow{'' if count == 1 else 's'})"
        )
    print()
    headers = ["GROUP", "BASE PASSED", "NEW PASSED", "DIFF", "95% CI (pp)", ""]
    lines = table(headers, _rate_rows(comparison.groups), right={1, 2, 3})
    metric_rows = _metric_rows(comparison.groups)
    if metric_rows:
        headers = ["GROUP", "METRIC", "BASE MEAN", "NEW MEAN", "DIFF", "95% CI", ""]
        lines += ["", *table(headers, metric_rows, right={2, 3, 4})]
    # Not clipped to the terminal: the verdict is the last column, and CI logs are wide.
    print("\n".join(lines))
    print()
    regressions = comparison.regressions
    if regressions:
        shown = ", ".join(_label(group) for group in regressions)
        print(f"pass rate fell significantly: {shown}")
    else:
        print("no pass rate fell significantly")
    return FAILED if regressions and args.fail_on_regression else OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare two runs group by group: pass rates and metric means, with 95%% intervals",
    )
    for name, what in (("base", "the run to compare against"), ("new", "the run to judge")):
        compare.add_argument(
            name,
            metavar=f"{name.upper()}",
            help=f"{what}: a run directory, a report.json (also a merged one), a run id or "
            "'latest'",
        )
    compare.add_argument(
        "--group-by",
        metavar="AXIS|tag",
        help="compare only the groups of this matrix axis (or the tags); default: every flow, "
        "then every axis and the tags",
    )
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when some group's pass rate fell significantly (its 95%% interval lies "
        "below zero)",
    )
    compare.add_argument(
        "--output",
        metavar="DIR",
        help="results directory holding the runs, for run ids and 'latest' (default: "
        "./runset-results)",
    )
    compare.set_defaults(func=cmd_compare)

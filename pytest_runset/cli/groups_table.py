"""The groups of a report as text tables: ``show --group-by`` and ``compare`` print them.

Groups are recomputed from the report's flows (results/groups.py) rather than read from its
``groups``: the numbers are the same, and reports of older releases or merged by hand work too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pytest_runset.cli.common import Usage, one_line, table
from pytest_runset.results.formats import Grouping, MatrixValue
from pytest_runset.results.groups import compute_groups
from pytest_runset.results.statuses import STATUSES

__all__ = ["figure", "grouping_lines", "percent", "select_grouping", "shown_value"]


def figure(value: float | None) -> str:
    """A statistic in four significant digits; ``-`` when there is none."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def shown_value(value: MatrixValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return one_line(str(value))


def select_grouping(report: Mapping[str, Any], by: str) -> Grouping:
    """The grouping ``--group-by BY`` names (an axis, or ``tag``); :class:`Usage` if none."""
    flows = report.get("flows")
    groupings = compute_groups(flows if isinstance(flows, list) else [])
    for grouping in groupings:
        if grouping["by"] == by:
            return grouping
    have = ", ".join(one_line(grouping["by"]) for grouping in groupings)
    raise Usage(
        f"--group-by {one_line(by)}: the report has no such matrix axis or tags "
        + (f"(it has: {have})" if have else "(no flow in it has a matrix or tags)")
    )


def grouping_lines(grouping: Grouping) -> list[str]:
    """The counts table of one grouping, then one table per numeric metric."""
    by = grouping["by"]
    groups = grouping["groups"]
    title = "tag" if grouping["kind"] == "tag" else by
    statuses = [s for s in STATUSES if any(group["counts"].get(s) for group in groups)]
    lines = [f"grouped by {'tag' if grouping['kind'] == 'tag' else f'matrix axis {by}'}:"]
    rows = [
        [
            shown_value(group["value"]),
            str(group["n"]),
            percent(group["pass_rate"]),
            *(str(group["counts"].get(status, 0)) for status in statuses),
        ]
        for group in groups
    ]
    headers = [title.upper(), "N", "PASS RATE", *(s.upper().replace("_", " ") for s in statuses)]
    lines += table(headers, rows, right=set(range(1, len(headers))))
    metrics = list(dict.fromkeys(name for group in groups for name in group["metrics"]))
    for name in metrics:
        rows = []
        for group in groups:
            stats = group["metrics"].get(name)
            if stats is None:
                continue
            ci = stats["ci95"]
            rows.append(
                [
                    shown_value(group["value"]),
                    str(stats["n"]),
                    figure(stats["mean"]),
                    figure(stats["stdev"]),
                    figure(stats["min"]),
                    figure(stats["median"]),
                    figure(stats["max"]),
                    f"[{figure(ci[0])}, {figure(ci[1])}]" if ci else "-",
                    str(stats["n_missing"]),
                ]
            )
        headers = [title.upper(), "N", "MEAN", "STDEV", "MIN", "MEDIAN", "MAX", "95% CI"]
        lines += ["", f"metric {one_line(name)}:"]
        lines += table([*headers, "MISSING"], rows, right=set(range(1, 9)))
    return lines

"""The groups of a report as a part of the HTML page: a table per grouping (a matrix axis, or
the tags) and a small inline-SVG plot per numeric metric.

Each plot has a row per group: the range from min to max as a thin line, the 95% confidence
interval of the mean as a thick one, the mean as a dot. Everything is drawn inline (SVG and one
``<style>``), nothing is fetched, so the page's Content-Security-Policy needs no change. Data
in, HTML out: :func:`groups_section` takes the report and returns the HTML (empty when the
report has no groups).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_runset.results.formats import Grouping, GroupStats, MatrixValue, MetricStats
from pytest_runset.results.groups import compute_groups
from pytest_runset.results.statuses import STATUSES

__all__ = ["groups_section"]

_STYLE = """<style>
.groups td,.groups th{text-align:right}
.groups td:first-child,.groups th:first-child{text-align:left}
.group-plots{display:flex;flex-wrap:wrap;gap:1em;margin:.5em 0 1em}
.group-plots figure{margin:0}.group-plots figcaption{font-size:.85em;color:#444}
.rate{display:inline-block;vertical-align:middle;margin-left:4px}
</style>"""
_LABEL_W = 110
_PLOT_W = 220
_ROW_H = 18


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _value(value: MatrixValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fig(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _rate_cell(rate: float | None) -> str:
    if rate is None:
        return "-"
    bar = (
        f'<svg class="rate" width="50" height="8" role="img" aria-label="{rate:.0%}">'
        '<rect width="50" height="8" fill="#eee"/>'
        f'<rect width="{rate * 50:.1f}" height="8" fill="#2e7d32"/></svg>'
    )
    return f"{rate * 100:.1f}%{bar}"


def _metric_cell(stats: MetricStats | None) -> str:
    if stats is None or stats["mean"] is None:
        return "-"
    text = _fig(stats["mean"])
    if stats["ci95"] is not None:
        low, high = stats["ci95"]
        text += f" <small>[{_fig(low)}, {_fig(high)}]</small>"
    if stats["n_missing"]:
        text += f' <small title="flows without this metric">({stats["n_missing"]} missing)</small>'
    return text


def _plot(name: str, groups: Sequence[GroupStats]) -> str:
    """One metric across the groups: min-max line, 95% CI bar, mean dot, one row each."""
    rows = [(group, group["metrics"].get(name)) for group in groups]
    points: list[float] = [
        value
        for _, stats in rows
        if stats is not None
        for value in (stats["min"], stats["max"], *(stats["ci95"] or ()))
        if value is not None and math.isfinite(value)
    ]
    if not points:
        return ""
    low, high = min(points), max(points)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return _LABEL_W + 6 + (value - low) / span * (_PLOT_W - 12)

    height = _ROW_H * len(rows) + 16
    width = _LABEL_W + _PLOT_W
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(name)} per group" font-size="11" font-family="sans-serif">'
    ]
    for row, (group, stats) in enumerate(rows):
        y = _ROW_H * row + _ROW_H / 2
        label = _value(group["value"])
        label = label if len(label) <= 16 else label[:15] + "\u2026"
        parts.append(f'<text x="0" y="{y + 4:.1f}" fill="#333">{_e(label)}</text>')
        if stats is None or stats["mean"] is None:
            continue
        if stats["min"] is not None and stats["max"] is not None:
            parts.append(
                f'<line x1="{x(stats["min"]):.1f}" x2="{x(stats["max"]):.1f}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="#bbb" stroke-width="1"/>'
            )
        if stats["ci95"] is not None:
            ci_low, ci_high = stats["ci95"]
            parts.append(
                f'<line x1="{x(ci_low):.1f}" x2="{x(ci_high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#1565c0" stroke-width="4" stroke-opacity=".45"/>'
            )
        parts.append(
            f'<circle cx="{x(stats["mean"]):.1f}" cy="{y:.1f}" r="3.5" fill="#1565c0">'
            f"<title>{_e(label)}: mean {_fig(stats['mean'])}, n {stats['n']}</title></circle>"
        )
    axis_y = _ROW_H * len(rows) + 12
    parts += [
        f'<text x="{_LABEL_W + 6}" y="{axis_y}" fill="#666">{_e(_fig(low))}</text>',
        f'<text x="{width - 6}" y="{axis_y}" fill="#666" text-anchor="end">{_e(_fig(high))}</text>',
        "</svg>",
    ]
    return "".join(parts)


def _grouping(grouping: Grouping) -> list[str]:
    groups = grouping["groups"]
    title = "tag" if grouping["kind"] == "tag" else grouping["by"]
    statuses = [s for s in STATUSES if any(group["counts"].get(s) for group in groups)]
    metrics = list(dict.fromkeys(name for group in groups for name in group["metrics"]))
    heading = "by tag" if grouping["kind"] == "tag" else f"by matrix axis {grouping['by']}"
    head = [_e(title), "n", "pass rate", *(_e(s.replace("_", " ")) for s in statuses)]
    head += [f"{_e(name)} <small>mean [95% CI]</small>" for name in metrics]
    out = [
        f"<h3>{_e(heading)}</h3>",
        '<table class="groups"><thead><tr>',
        "".join(f"<th>{cell}</th>" for cell in head),
        "</tr></thead><tbody>",
    ]
    for group in groups:
        cells = [
            _e(_value(group["value"])),
            str(group["n"]),
            _rate_cell(group["pass_rate"]),
            *(str(group["counts"].get(status, 0)) for status in statuses),
            *(_metric_cell(group["metrics"].get(name)) for name in metrics),
        ]
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</tbody></table>")
    plots = [(name, _plot(name, groups)) for name in metrics]
    plots = [(name, svg) for name, svg in plots if svg]
    if plots:
        out.append('<div class="group-plots">')
        out += [
            f"<figure>{svg}<figcaption>{_e(name)}: mean, 95% CI (thick), min to max"
            "</figcaption></figure>"
            for name, svg in plots
        ]
        out.append("</div>")
    return out


def groups_section(report: Mapping[str, Any]) -> str:
    """The page's "Groups" part for ``report``; ``""`` when no flow has a matrix or tags.

    Groups are recomputed from the flows (as ``pytest-runset show --group-by`` does): the same
    numbers as the report's ``groups``, and well-formed whatever file the report came from.
    """
    flows = report.get("flows")
    groupings = compute_groups(flows if isinstance(flows, list) else [])
    if not groupings:
        return ""
    parts = ['<section id="groups">', "<h2>Groups</h2>", _STYLE]
    for grouping in groupings:
        parts += _grouping(grouping)
    parts.append("</section>")
    return "\n".join(parts)

"""The report page's timeline: one lane per worker, one bar per attempt of each flow.

A retried flow has a bar for every attempt, in the lane of the worker that ran it; earlier
attempts are hatched, the last one is solid. Reports of older releases say when the last
attempt started only: their earlier attempts have no bar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from pytest_runset.results.html_values import e, history, lane, natural, secs, status_class
from pytest_runset.results.numbers import num


class Bar(NamedTuple):
    """One attempt drawn on the timeline."""

    flow: Mapping[str, Any]
    target: str  # the anchor a click leads to
    start: float
    duration: float
    status: object
    attempt: int  # 1-based
    attempts: int
    last: bool


def _bars(flow: Mapping[str, Any], target: str) -> list[tuple[str, Bar]]:
    """The flow's attempts that say when and where they ran, each with its lane."""
    if flow.get("attempts") == 0:
        return []
    tries = history(flow)
    total = max(len(tries), 1)
    out: list[tuple[str, Bar]] = []
    for number, attempt in enumerate(tries[:-1], 1):
        where = lane(flow, attempt.get("worker"))
        start = num(attempt.get("started_s"))
        if where is None or start is None:
            continue
        duration = max(0.0, num(attempt.get("duration_s")) or 0.0)
        bar = Bar(flow, target, max(0.0, start), duration, attempt.get("status"), number, total,
                  last=False)  # fmt: skip
        out.append((where, bar))
    # The last attempt is the flow's own fields (every release wrote them).
    where = lane(flow)
    start = num(flow.get("started_s"))
    if where is not None and start is not None:
        duration = max(0.0, num(flow.get("duration_s")) or 0.0)
        bar = Bar(flow, target, max(0.0, start), duration, flow.get("status"), total, total,
                  last=True)  # fmt: skip
        out.append((where, bar))
    return out


def timeline(
    report: Mapping[str, Any],
    flows: list[Mapping[str, Any]],
    target: Callable[[Mapping[str, Any], int], str],
) -> list[str]:
    """The timeline's HTML; ``target(flow, position)`` is where a click on a bar leads."""
    lanes: dict[str, list[Bar]] = {}
    end = num(report.get("wall_s")) or 0.0
    for position, flow in enumerate(flows):
        for where, bar in _bars(flow, target(flow, position)):
            lanes.setdefault(where, []).append(bar)
            end = max(end, bar.start + bar.duration)
    if not lanes:
        return ["<p>No flow ran.</p>"]
    scale = end if end > 0 else 1.0
    out = ['<div class="timeline" id="timeline">']
    for where in sorted(lanes, key=natural):
        out.append(f'<div class="lane" data-worker="{e(where)}">')
        out.append(f'<div class="lane-name">{e(where)}</div><div class="track">')
        out += [_bar(bar, where, scale) for bar in lanes[where]]
        out.append("</div></div>")
    out.append(f'</div><div class="axis"><span>0s</span><span>{e(secs(end))}</span></div>')
    return out


def _bar(bar: Bar, where: str, scale: float) -> str:
    flow = bar.flow
    left = 100.0 * bar.start / scale
    width = min(100.0 - left, 100.0 * bar.duration / scale)
    attempt = f", attempt {bar.attempt} of {bar.attempts}" if bar.attempts > 1 else ""
    flaky = " (flaky)" if bar.last and flow.get("flaky") is True else ""
    tip = (
        f"{flow.get('name')} — {bar.status}{flaky}{attempt}, {secs(bar.duration)} "
        f"from {secs(bar.start)} on {where}"
    )
    retry = "" if bar.last else " retry"
    return (
        f'<a class="bar s-{status_class(bar.status)}{retry}" href="#{e(bar.target)}" '
        f'data-status="{e(bar.status)}" data-slug="{e(flow.get("slug"))}" '
        f'data-attempt="{bar.attempt}" '
        f'style="left:{left:.3f}%;width:{width:.3f}%" title="{e(tip)}"></a>'
    )

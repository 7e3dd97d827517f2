"""The self-contained HTML report: one file, inline CSS and JS, nothing fetched from anywhere.

The page is rendered from a report dict (the ``report.json`` schema) and the directory its
paths are relative to. Links to logs and artifacts are computed relative to where the HTML file
is written, so a copy written elsewhere (``--runset-html PATH``, ``pytest-runset merge``) still
opens the run's files. Small screenshots are embedded as ``data:`` URIs so the page shows them
even when copied alone, and the details show the last lines of each failed flow's logs. Every
value from the report is escaped; a Content-Security-Policy lets only the page's own script (by
hash) run, as a second line of defence. Data in, HTML out: where the copies go is decided by
the layers above.

This module is the page: its head, the summary and the status filters. The parts are
:mod:`.html_timeline` (the per-worker timeline with every attempt), :mod:`.html_flow` (the
flows failure first: the table and the details), :mod:`.html_values` (escaping, numbers, and
the only reads of the run's files) and :mod:`.html_assets` (the stylesheet and the script).
Readable without JavaScript; the script only adds the filters and sorting.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_runset.model.fsnames import text_of
from pytest_runset.results.html_assets import CSS, JS
from pytest_runset.results.html_flow import details, rank, table
from pytest_runset.results.html_flow import target as flow_target
from pytest_runset.results.html_groups import groups_section
from pytest_runset.results.html_timeline import timeline
from pytest_runset.results.html_values import (
    INLINE_IMAGE_LIMIT,
    INLINE_TOTAL_LIMIT,
    Files,
    e,
    mapping,
    secs,
    status_class,
)
from pytest_runset.results.numbers import num
from pytest_runset.results.statuses import STATUSES

__all__ = [
    "HTML_NAME",
    "INLINE_IMAGE_LIMIT",
    "INLINE_TOTAL_LIMIT",
    "html_path_for",
    "render_html",
    "write_html",
]

HTML_NAME = "report.html"


def _summary(report: Mapping[str, Any], flows: list[Mapping[str, Any]], links: Files) -> list[str]:
    runset = mapping(report.get("runset"))
    summary = mapping(report.get("summary"))
    efficiency = num(summary.get("parallelism_efficiency"))
    sha = str(runset.get("sha256") or "")
    rows = [
        ("run-set", runset.get("name")),
        ("file", runset.get("file")),
        ("sha256", sha[:16] + ("…" if len(sha) > 16 else "")),
        ("run id", report.get("run_id")),
        ("started", report.get("started_at")),
        ("finished", report.get("finished_at")),
        ("wall", secs(report.get("wall_s"))),
        ("workers", report.get("workers")),
        ("efficiency", "-" if efficiency is None else f"{efficiency:.0%}"),
        ("lower bound", secs(summary.get("lower_bound_s"))),
        ("sum of durations", secs(summary.get("sum_duration_s"))),
    ]
    out = ['<table class="meta">']
    out += [f"<tr><td>{e(key)}</td><td>{e(value)}</td></tr>" for key, value in rows]
    out += _containment_rows(report)
    merged = report.get("merged_from")
    if isinstance(merged, list):
        out.append(f"<tr><td>merged from</td><td>{'<br>'.join(_shards(merged, links))}</td></tr>")
    out.append("</table>")
    counts = []
    for status in STATUSES:
        count = sum(1 for flow in flows if flow.get("status") == status)
        if count:
            counts.append(f'<span><span class="badge s-{status}">{e(status)}</span> {count}</span>')
    flaky = sum(1 for flow in flows if flow.get("flaky") is True)
    if flaky:
        counts.append(f"<span>flaky {flaky}</span>")
    out.append(f'<p class="counts">{"".join(counts) or "no flows"} (total {len(flows)})</p>')
    return out


def _containment_rows(report: Mapping[str, Any]) -> list[str]:
    """How the run's flows were contained, whether their limits held, how long it was paused.
    Reports of older releases (and merged reports) say none of it: no rows then."""
    out = []
    tier = report.get("containment")
    if isinstance(tier, str) and tier:
        out.append(f"<tr><td>containment</td><td>{e(tier)}</td></tr>")
    if report.get("limits_enforced") is False:
        out.append(
            '<tr><td>limits</td><td class="warn">memory_max and pids_max were not enforced '
            "(no cgroup tier)</td></tr>"
        )
    paused = num(report.get("paused_s"))
    if paused is not None and paused > 0:
        out.append(f"<tr><td>paused</td><td>{e(secs(paused))}</td></tr>")
    return out


def _shards(merged: list[Any], links: Files) -> list[str]:
    """One line per shard of a merged report, linking its report (and its page, if any)."""
    lines = []
    for item in merged:
        shard = mapping(item)
        text = (
            f"shard {shard.get('shard')}: run {shard.get('run_id')}, {shard.get('status')}, "
            f"{shard.get('flows')} flows, {secs(shard.get('wall_s'))} on "
            f"{shard.get('workers')} workers"
        )
        line = e(text)
        path = shard.get("report")
        if isinstance(path, str) and path:
            line += f' <a href="{e(links.href(path))}">report.json</a>'
            page = str(Path(path).with_suffix(".html"))
            if (links.run_dir / page).is_file():
                line += f' <a href="{e(links.href(page))}">report.html</a>'
        lines.append(line)
    return lines


def _filters(flows: list[Mapping[str, Any]]) -> list[str]:
    """Toggle buttons with counts: one per status present (failing ones first) and one for
    flaky flows. Several may be on at once (a flow shows when it matches any of them); ``all``
    turns them off and shows every flow."""
    counts: dict[str, int] = {
        s: sum(1 for flow in flows if flow.get("status") == s) for s in STATUSES
    }
    counts["flaky"] = sum(1 for flow in flows if flow.get("flaky") is True)
    # In the page's order: what went wrong, flaky, the rest.
    names: list[str] = [s for s in STATUSES if rank({"status": s}) == 0] + ["flaky"]
    names += [s for s in STATUSES if s not in names]
    buttons = [
        '<button type="button" data-filter="all" class="on" aria-pressed="true">all '
        f'<span class="n">{len(flows)}</span></button>'
    ]
    buttons += [_button(name, counts[name]) for name in names if counts[name]]
    return [
        '<div class="filters" id="filters" hidden>',
        *buttons,
        '<input id="filter-text" type="search" placeholder="filter by name, tag, persona…" '
        'aria-label="filter flows">',
        "</div>",
    ]


def _button(name: str, count: int) -> str:
    dot = "flaky" if name == "flaky" else f"s-{status_class(name)}"
    return (
        f'<button type="button" data-filter="{e(name)}" aria-pressed="false">'
        f'<span class="dot {dot}"></span>{e(name)} <span class="n">{count}</span></button>'
    )


def render_html(report: Mapping[str, Any], run_dir: Path, out_dir: Path | None = None) -> str:
    """The page for ``report``; its paths are relative to ``run_dir``, links to ``out_dir``."""
    raw_flows = report.get("flows")
    flows: list[Mapping[str, Any]] = [
        flow
        for flow in (raw_flows if isinstance(raw_flows, list) else [])
        if isinstance(flow, Mapping)
    ]
    links = Files(run_dir, out_dir if out_dir is not None else run_dir)
    runset = mapping(report.get("runset"))
    status = report.get("status")
    title = f"run-set {runset.get('name') or '?'}: {status or 'unknown'}"
    script_hash = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode("ascii")
    policy = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'"
    )
    sections = details(flows, links)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(policy)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>run-set {e(runset.get('name') or '?')} "
        f'<span class="badge s-{status_class("not_run" if status == "incomplete" else status)}">'
        f"{e(status or 'unknown')}</span></h1>",
        *_summary(report, flows, links),
        groups_section(report),
        "<h2>Timeline</h2>",
        *timeline(report, flows, flow_target),
        "<h2>Flows</h2>",
        *_filters(flows),
        '<div class="wide">',
        *table(flows, links),
        "</div>",
    ]
    if sections:
        parts += ["<h2>Details</h2>", *sections]
    parts += [f"<script>{JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


def html_path_for(report_path: Path) -> Path:
    """The HTML file written beside a report JSON file (``x.json`` -> ``x.html``)."""
    return report_path.with_suffix(".html")


def _utf8(page: str) -> bytes:
    """The page as UTF-8. A file name Python holds as escaped bytes (a C locale) is shown as
    the UTF-8 it is; anything else that is not text (bytes that are not UTF-8, a lone
    surrogate from a flow's JSON) as U+FFFD."""
    try:
        return page.encode("utf-8")
    except UnicodeEncodeError:
        return text_of(page).encode("utf-8")


def write_html(report: Mapping[str, Any], run_dir: Path, target: Path) -> Path:
    """Write the page to ``target`` atomically (temp file + rename); return its path."""
    page = render_html(report, run_dir, target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(_utf8(page))
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return target

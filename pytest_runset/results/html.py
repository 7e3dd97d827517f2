"""The self-contained HTML report: one file, inline CSS and JS, nothing fetched from anywhere.

The page is rendered from a report dict (the ``report.json`` schema) and the directory its
paths are relative to. Links to logs and artifacts are computed relative to where the HTML file
is written, so a copy written elsewhere (``--runset-html PATH``, ``pytest-runset merge``) still
opens the run's files. Small screenshots are embedded as ``data:`` URIs so the page shows them
even when copied alone. Every value from the report is escaped; a Content-Security-Policy lets
only the page's own script (by hash) run, as a second line of defence. The stylesheet and
script are in :mod:`pytest_runset.results.html_assets`. Data in, HTML out: where the copies
go is decided by the layers above.
Readable without JavaScript; the script only adds the status and text filters.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pytest_runset.model.fsnames import os_name, text_of
from pytest_runset.results.html_assets import CSS, JS
from pytest_runset.results.statuses import STATUSES

HTML_NAME = "report.html"
# Screenshots up to this size are embedded; larger ones are linked.
INLINE_IMAGE_LIMIT = 512 * 1024
# Total embedded image bytes per page, so a run with many failures stays a reasonable file.
INLINE_TOTAL_LIMIT = 8 * 1024 * 1024
_IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_BAD_STATUSES = frozenset({"failed", "error", "timeout", "interrupted", "xpassed"})


def _e(value: object) -> str:
    """Escaped text of any report value (``None`` is empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


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


def _secs(value: object) -> str:
    number = _num(value)
    return "-" if number is None else f"{number:.2f}s"


def _usage(flow: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """A flow's CPU seconds and peak memory in MiB; ``None`` where the report does not say
    (a report of an older release, a flow that never started, a peak nobody measured)."""
    resources = flow.get("resources")
    if not isinstance(resources, Mapping) or flow.get("attempts") == 0:
        return None, None
    cpu = _num(resources.get("cpu_s"))
    peak = _num(resources.get("peak_memory_bytes"))
    return cpu, (None if peak is None else peak / (1 << 20))


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _status(value: object) -> str:
    """A status usable as a CSS class: one of the known ones, else ``unknown``."""
    return value if isinstance(value, str) and value in STATUSES else "unknown"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _natural(text: str) -> list[Any]:
    """Sort key so that ``gw2`` comes before ``gw10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


class _Links:
    """Turns report paths (relative to the run directory) into hrefs from the HTML file."""

    def __init__(self, run_dir: Path, out_dir: Path) -> None:
        self.run_dir = run_dir
        self.out_dir = out_dir
        self.embedded = 0

    def href(self, path: str) -> str:
        target = self.run_dir / path
        try:
            relative = os.path.relpath(target, self.out_dir)
        except ValueError:  # another drive on Windows: an absolute file URL still works
            return Path(os.path.abspath(target)).as_uri()
        # Quoting turns ':' into '%3A', so no report value can become a javascript: URL.
        return quote(relative.replace(os.sep, "/"), safe="/")

    def image(self, path: str) -> str | None:
        """A ``data:`` URI of a small PNG/JPEG artifact, or ``None`` (link it instead)."""
        if not path.lower().endswith(_IMAGE_SUFFIXES):
            return None
        try:
            target = (self.run_dir / os_name(path)).resolve()
            if not target.is_relative_to(self.run_dir.resolve()):
                return None  # never embed a file from outside the run (a hostile report's path)
            size = target.stat().st_size
            if size > INLINE_IMAGE_LIMIT or self.embedded + size > INLINE_TOTAL_LIMIT:
                return None
            data = target.read_bytes()
        except (OSError, ValueError):
            return None
        mime = next((m for magic, m in _IMAGE_TYPES.items() if data.startswith(magic)), None)
        if mime is None:
            return None
        self.embedded += len(data)
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _anchor(flow: Mapping[str, Any], position: int) -> str:
    slug = flow.get("slug")
    return f"flow-{slug}" if isinstance(slug, str) and slug else f"flow-{position}"


def _history(flow: Mapping[str, Any]) -> list[Any]:
    history = flow.get("history")
    return history if isinstance(history, list) else []


def _has_details(flow: Mapping[str, Any]) -> bool:
    """Whether the flow gets a details section: something went wrong, files, or retries."""
    return bool(
        flow.get("status") in _BAD_STATUSES
        or _strings(flow.get("artifacts"))
        or len(_history(flow)) > 1
    )


def _target(flow: Mapping[str, Any], position: int) -> str:
    """Where a click on the flow leads: its details section, else its table row."""
    anchor = _anchor(flow, position)
    return anchor if _has_details(flow) else f"row-{anchor}"


def _search_text(flow: Mapping[str, Any]) -> str:
    parts = [flow.get("name"), flow.get("slug"), flow.get("persona"), flow.get("worker")]
    parts += _strings(flow.get("tags"))
    parts.append(flow.get("message"))
    return " ".join(str(p) for p in parts if p not in (None, "")).lower()


def _lane(flow: Mapping[str, Any]) -> str | None:
    worker = flow.get("worker")
    if worker in (None, ""):
        return None
    shard = flow.get("shard")
    return f"shard {shard} {worker}" if shard is not None else str(worker)


def _summary(report: Mapping[str, Any], flows: list[Mapping[str, Any]], links: _Links) -> list[str]:
    runset = _mapping(report.get("runset"))
    summary = _mapping(report.get("summary"))
    efficiency = _num(summary.get("parallelism_efficiency"))
    sha = str(runset.get("sha256") or "")
    rows = [
        ("run-set", runset.get("name")),
        ("file", runset.get("file")),
        ("sha256", sha[:16] + ("…" if len(sha) > 16 else "")),
        ("run id", report.get("run_id")),
        ("started", report.get("started_at")),
        ("finished", report.get("finished_at")),
        ("wall", _secs(report.get("wall_s"))),
        ("workers", report.get("workers")),
        ("efficiency", "-" if efficiency is None else f"{efficiency:.0%}"),
        ("lower bound", _secs(summary.get("lower_bound_s"))),
        ("sum of durations", _secs(summary.get("sum_duration_s"))),
    ]
    out = ['<table class="meta">']
    out += [f"<tr><td>{_e(key)}</td><td>{_e(value)}</td></tr>" for key, value in rows]
    out += _containment_rows(report)
    merged = report.get("merged_from")
    if isinstance(merged, list):
        out.append(f"<tr><td>merged from</td><td>{'<br>'.join(_shards(merged, links))}</td></tr>")
    out.append("</table>")
    counts = []
    for status in STATUSES:
        count = sum(1 for flow in flows if flow.get("status") == status)
        if count:
            counts.append(
                f'<span><span class="badge s-{status}">{_e(status)}</span> {count}</span>'
            )
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
        out.append(f"<tr><td>containment</td><td>{_e(tier)}</td></tr>")
    if report.get("limits_enforced") is False:
        out.append(
            '<tr><td>limits</td><td class="warn">memory_max and pids_max were not enforced '
            "(no cgroup tier)</td></tr>"
        )
    paused = _num(report.get("paused_s"))
    if paused is not None and paused > 0:
        out.append(f"<tr><td>paused</td><td>{_e(_secs(paused))}</td></tr>")
    return out


def _shards(merged: list[Any], links: _Links) -> list[str]:
    """One line per shard of a merged report, linking its report (and its page, if any)."""
    lines = []
    for item in merged:
        shard = _mapping(item)
        text = (
            f"shard {shard.get('shard')}: run {shard.get('run_id')}, {shard.get('status')}, "
            f"{shard.get('flows')} flows, {_secs(shard.get('wall_s'))} on "
            f"{shard.get('workers')} workers"
        )
        line = _e(text)
        path = shard.get("report")
        if isinstance(path, str) and path:
            line += f' <a href="{_e(links.href(path))}">report.json</a>'
            page = str(Path(path).with_suffix(".html"))
            if (links.run_dir / page).is_file():
                line += f' <a href="{_e(links.href(page))}">report.html</a>'
        lines.append(line)
    return lines


def _filters(flows: list[Mapping[str, Any]]) -> list[str]:
    present = [s for s in STATUSES if any(flow.get("status") == s for flow in flows)]
    buttons = ['<button type="button" data-filter="all" class="on">all</button>']
    buttons += [f'<button type="button" data-filter="{s}">{_e(s)}</button>' for s in present]
    return [
        '<div class="filters" id="filters" hidden>',
        *buttons,
        '<input id="filter-text" type="search" placeholder="filter by name, tag, persona…" '
        'aria-label="filter flows">',
        "</div>",
    ]


def _file_links(flow: Mapping[str, Any], links: _Links) -> list[str]:
    out = []
    logs = _mapping(flow.get("logs"))
    for name in ("stdout", "stderr"):
        path = logs.get(name)
        if isinstance(path, str) and path:
            out.append(f'<a href="{_e(links.href(path))}">{_e(name)}</a>')
    for path in _strings(flow.get("artifacts")):
        label = path.rsplit("/", 1)[-1]
        out.append(f'<a href="{_e(links.href(path))}">{_e(label)}</a>')
    return out


def _table(flows: list[Mapping[str, Any]], links: _Links) -> list[str]:
    out = [
        '<table id="flows"><thead><tr><th data-col="0">status</th>'
        '<th data-col="1" data-numeric>flow</th>'
        '<th class="num" data-col="2" data-numeric data-desc>duration</th>'
        '<th data-col="3">worker</th><th data-col="4">persona</th>'
        '<th class=num data-col="5" data-numeric data-desc>attempts</th>'
        '<th class=num data-col="6" data-numeric data-desc title="CPU seconds">cpu</th>'
        '<th class=num data-col="7" data-numeric data-desc title="peak memory">peak MiB</th>'
        "<th>tags</th><th>files</th><th>message</th></tr></thead><tbody>"
    ]
    for position, flow in enumerate(flows):
        status = _status(flow.get("status"))
        attempts = flow.get("attempts")
        flaky = " (flaky)" if flow.get("flaky") is True else ""
        duration = _secs(flow.get("duration_s")) if attempts != 0 else "-"
        seconds = _num(flow.get("duration_s")) if attempts != 0 else None
        tries = _num(attempts)
        cpu, peak = _usage(flow)
        name = _e(flow.get("name"))
        if _has_details(flow):
            name = f'<a href="#{_e(_anchor(flow, position))}">{name}</a>'
        out.append(
            f'<tr class="flow-row" id="row-{_e(_anchor(flow, position))}" data-pos="{position}" '
            f'data-status="{_e(flow.get("status"))}" '
            f'data-search="{_e(_search_text(flow))}" data-slug="{_e(flow.get("slug"))}">'
            f'<td><span class="badge s-{status}">{_e(flow.get("status"))}</span></td>'
            f'<td data-value="{position}">{name}'
            f'<div class="slug">{_e(flow.get("slug"))}</div></td>'
            f'<td class="num" data-value="{seconds if seconds is not None else -1}">'
            f"{_e(duration)}</td><td>{_e(_lane(flow) or '-')}</td>"
            f"<td>{_e(flow.get('persona') or '-')}</td>"
            f'<td class="num" data-value="{tries if tries is not None else -1}">'
            f"{_e(attempts)}{_e(flaky)}</td>"
            f'<td class="num" data-value="{cpu if cpu is not None else -1}">{_e(_secs(cpu))}</td>'
            f'<td class="num" data-value="{peak if peak is not None else -1}">{_mib(peak)}</td>'
            f"<td>{_e(', '.join(_strings(flow.get('tags'))) or '-')}</td>"
            f"<td>{' '.join(_file_links(flow, links))}</td>"
            f'<td class="msg">{_e(flow.get("message"))}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def _timeline(report: Mapping[str, Any], flows: list[Mapping[str, Any]]) -> list[str]:
    lanes: dict[str, list[tuple[int, Mapping[str, Any], float, float]]] = {}
    end = _num(report.get("wall_s")) or 0.0
    for position, flow in enumerate(flows):
        lane = _lane(flow)
        start = _num(flow.get("started_s"))
        if lane is None or start is None or flow.get("attempts") == 0:
            continue
        duration = max(0.0, _num(flow.get("duration_s")) or 0.0)
        lanes.setdefault(lane, []).append((position, flow, max(0.0, start), duration))
        end = max(end, start + duration)
    if not lanes:
        return ["<p>No flow ran.</p>"]
    scale = end if end > 0 else 1.0
    out = ['<div class="timeline" id="timeline">']
    for lane in sorted(lanes, key=_natural):
        out.append(f'<div class="lane" data-worker="{_e(lane)}">')
        out.append(f'<div class="lane-name">{_e(lane)}</div><div class="track">')
        for position, flow, start, duration in lanes[lane]:
            status = _status(flow.get("status"))
            left = 100.0 * start / scale
            width = min(100.0 - left, 100.0 * duration / scale)
            tip = (
                f"{flow.get('name')} — {flow.get('status')}, {_secs(duration)} "
                f"from {_secs(start)} on {lane}"
            )
            out.append(
                f'<a class="bar s-{status}" href="#{_e(_target(flow, position))}" '
                f'data-status="{_e(flow.get("status"))}" data-slug="{_e(flow.get("slug"))}" '
                f'style="left:{left:.3f}%;width:{width:.3f}%" title="{_e(tip)}"></a>'
            )
        out.append("</div></div>")
    out.append(f'</div><div class="axis"><span>0s</span><span>{_e(_secs(end))}</span></div>')
    return out


def _resources_line(flow: Mapping[str, Any]) -> list[str]:
    """What the flow's processes used in its last attempt, when the report says."""
    cpu, peak = _usage(flow)
    if cpu is None and peak is None:
        return []
    memory = "unknown" if peak is None else f"{peak:.1f} MiB"
    return [f'<p class="usage">resources: CPU {_e(_secs(cpu))} · peak memory {memory}</p>']


def _details(flows: list[Mapping[str, Any]], links: _Links) -> list[str]:
    """One block per flow that has something to look at: a message, files or retries."""
    out: list[str] = []
    for position, flow in enumerate(flows):
        status = flow.get("status")
        if not _has_details(flow):
            continue
        history = _history(flow)
        artifacts = _strings(flow.get("artifacts"))
        out.append(
            f'<section class="flow" id="{_e(_anchor(flow, position))}" '
            f'data-status="{_e(status)}" data-search="{_e(_search_text(flow))}">'
            f'<h3><span class="badge s-{_status(status)}">{_e(status)}</span> '
            f"{_e(flow.get('name'))} <span class=slug>{_e(flow.get('slug'))}</span></h3>"
        )
        if flow.get("message"):
            out.append(f"<pre>{_e(flow.get('message'))}</pre>")
        out += _resources_line(flow)
        files = _file_links(flow, links)
        result = flow.get("result")
        if isinstance(result, str) and result:
            files.append(f'<a href="{_e(links.href(result))}">result.json</a>')
        if files:
            out.append(f"<p>files: {' · '.join(files)}</p>")
        if len(history) > 1:
            out.append("<table><tr><th>attempt</th><th>status</th><th>duration</th>"
                       "<th>directory</th><th>message</th></tr>")  # fmt: skip
            for attempt in history:
                if not isinstance(attempt, Mapping):
                    continue
                directory = attempt.get("dir")
                cell = (
                    f'<a href="{_e(links.href(directory))}">{_e(directory)}</a>'
                    if isinstance(directory, str) and directory
                    else "-"
                )
                out.append(
                    f"<tr><td>{_e(attempt.get('attempt'))}</td><td>{_e(attempt.get('status'))}"
                    f"</td><td>{_e(_secs(attempt.get('duration_s')))}</td><td>{cell}</td>"
                    f'<td class="msg">{_e(attempt.get("message"))}</td></tr>'
                )
            out.append("</table>")
        for path in artifacts:
            uri = links.image(path)
            if uri is not None:
                out.append(
                    f'<figure><img src="{_e(uri)}" alt="{_e(path)}" data-artifact="{_e(path)}">'
                    f"<figcaption>{_e(path)}</figcaption></figure>"
                )
        out.append("</section>")
    return out


def render_html(report: Mapping[str, Any], run_dir: Path, out_dir: Path | None = None) -> str:
    """The page for ``report``; its paths are relative to ``run_dir``, links to ``out_dir``."""
    raw_flows = report.get("flows")
    flows: list[Mapping[str, Any]] = [
        flow
        for flow in (raw_flows if isinstance(raw_flows, list) else [])
        if isinstance(flow, Mapping)
    ]
    links = _Links(run_dir, out_dir if out_dir is not None else run_dir)
    runset = _mapping(report.get("runset"))
    status = report.get("status")
    title = f"run-set {runset.get('name') or '?'}: {status or 'unknown'}"
    script_hash = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode("ascii")
    policy = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'"
    )
    details = _details(flows, links)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>run-set {_e(runset.get('name') or '?')} "
        f'<span class="badge s-{_status("not_run" if status == "incomplete" else status)}">'
        f"{_e(status or 'unknown')}</span></h1>",
        *_summary(report, flows, links),
        "<h2>Timeline</h2>",
        *_timeline(report, flows),
        "<h2>Flows</h2>",
        *_filters(flows),
        *_table(flows, links),
    ]
    if details:
        parts += ["<h2>Details</h2>", *details]
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

"""The report page's flows: their order, the table, and one details section per flow.

Failure first: flows that failed, errored, timed out, were interrupted or passed unexpectedly
come first, then flaky ones, then the rest, each group in file order (:func:`ordered`). A
details section shows what a reader needs to see why a flow failed without opening a file: the
error, the steps with their durations and the failing one marked, the ends of stdout and
stderr, the page's console errors, the screenshots, the trace with the command that opens it,
and every attempt.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from pytest_runset.results.html_values import (
    BAD_STATUSES,
    Files,
    e,
    history,
    lane,
    mapping,
    secs,
    status_class,
    strings,
)
from pytest_runset.results.numbers import num

# How much of each log the details show.
TAIL_LINES = 20
# Lines of a browser flow's console.log that are errors: console.error() and uncaught ones.
_CONSOLE_ERRORS = (" console.error: ", " pageerror: ")


def rank(flow: Mapping[str, Any]) -> int:
    """0 for a flow that went wrong, 1 for a flaky one, 2 for the rest."""
    if flow.get("status") in BAD_STATUSES:
        return 0
    return 1 if flow.get("flaky") is True else 2


def ordered(flows: list[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    """The flows failure first, each with its position in file order."""
    return sorted(enumerate(flows), key=lambda item: (rank(item[1]), item[0]))


def anchor(flow: Mapping[str, Any], position: int) -> str:
    slug = flow.get("slug")
    return f"flow-{slug}" if isinstance(slug, str) and slug else f"flow-{position}"


def has_details(flow: Mapping[str, Any]) -> bool:
    """Whether the flow gets a details section: something went wrong, it is flaky, it left
    files, or it was retried."""
    return bool(rank(flow) < 2 or strings(flow.get("artifacts")) or len(history(flow)) > 1)


def target(flow: Mapping[str, Any], position: int) -> str:
    """Where a click on the flow leads: its details section, else its table row."""
    where = anchor(flow, position)
    return where if has_details(flow) else f"row-{where}"


def _search_text(flow: Mapping[str, Any]) -> str:
    parts = [flow.get("name"), flow.get("slug"), flow.get("persona"), flow.get("worker")]
    parts += strings(flow.get("tags"))
    parts.append(flow.get("message"))
    return " ".join(str(p) for p in parts if p not in (None, "")).lower()


def _usage(flow: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """A flow's CPU seconds and peak memory in MiB; ``None`` where the report does not say
    (a report of an older release, a flow that never started, a peak nobody measured).

    No peak at all (``0`` bytes) is no measurement: a steps flow drives its browser from the
    worker and starts no process of its own, and shows ``-`` rather than ``0.0 MiB``."""
    resources = flow.get("resources")
    if not isinstance(resources, Mapping) or flow.get("attempts") == 0:
        return None, None
    cpu = num(resources.get("cpu_s"))
    peak = num(resources.get("peak_memory_bytes"))
    if peak is not None and peak <= 0:
        peak = None
        cpu = cpu or None
    return cpu, (None if peak is None else peak / (1 << 20))


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _filter_attrs(flow: Mapping[str, Any]) -> str:
    """What the page's filters read: status, flakiness, searchable text."""
    flaky = ' data-flaky="1"' if flow.get("flaky") is True else ""
    return f'data-status="{e(flow.get("status"))}"{flaky} data-search="{e(_search_text(flow))}"'


def _badges(flow: Mapping[str, Any]) -> str:
    status = flow.get("status")
    out = f'<span class="badge s-{status_class(status)}">{e(status)}</span>'
    if flow.get("flaky") is True:
        out += ' <span class="badge flaky">flaky</span>'
    return out


def file_links(flow: Mapping[str, Any], files: Files) -> list[str]:
    out = []
    logs = mapping(flow.get("logs"))
    for name in ("stdout", "stderr"):
        path = logs.get(name)
        if isinstance(path, str) and path:
            out.append(f'<a href="{e(files.href(path))}">{e(name)}</a>')
    for path in strings(flow.get("artifacts")):
        label = path.rsplit("/", 1)[-1]
        out.append(f'<a href="{e(files.href(path))}">{e(label)}</a>')
    return out


def table(flows: list[Mapping[str, Any]], files: Files) -> list[str]:
    out = [
        '<table id="flows"><thead><tr>'
        '<th data-col="0" data-numeric title="failures first">status</th>'
        '<th data-col="1" data-numeric title="file order">flow</th>'
        '<th class="num" data-col="2" data-numeric data-desc>duration</th>'
        '<th data-col="3">worker</th><th data-col="4">persona</th>'
        '<th class=num data-col="5" data-numeric data-desc>attempts</th>'
        '<th class=num data-col="6" data-numeric data-desc title="CPU seconds">cpu</th>'
        '<th class=num data-col="7" data-numeric data-desc title="peak memory">peak MiB</th>'
        "<th>tags</th><th>files</th><th>message</th></tr></thead><tbody>"
    ]
    for shown, (position, flow) in enumerate(ordered(flows)):
        attempts = flow.get("attempts")
        ran = attempts != 0
        seconds = num(flow.get("duration_s")) if ran else None
        tries = num(attempts)
        cpu, peak = _usage(flow)
        name = e(flow.get("name"))
        if has_details(flow):
            name = f'<a href="#{e(anchor(flow, position))}">{name}</a>'
        tags = ", ".join(strings(flow.get("tags")))
        links = " ".join(file_links(flow, files))
        out.append(
            f'<tr class="flow-row" id="row-{e(anchor(flow, position))}" data-pos="{shown}" '
            f'{_filter_attrs(flow)} data-slug="{e(flow.get("slug"))}">'
            f'<td class="status" data-value="{rank(flow)}">{_badges(flow)}</td>'
            f'<td data-value="{position}">{name}<div class="slug">{e(flow.get("slug"))}</div></td>'
            f'<td class="num{"" if ran else " none"}" data-label="duration" '
            f'data-value="{seconds if seconds is not None else -1}">'
            f"{e(secs(flow.get('duration_s')) if ran else '-')}</td>"
            f"{_cell('worker', lane(flow))}{_cell('persona', flow.get('persona'))}"
            f'<td class="num" data-label="attempts" '
            f'data-value="{tries if tries is not None else -1}">{e(attempts)}</td>'
            f'<td class="num" data-label="cpu" data-value="{cpu if cpu is not None else -1}">'
            f"{e(secs(cpu))}</td>"
            f'<td class="num" data-label="peak MiB" '
            f'data-value="{peak if peak is not None else -1}">{_mib(peak)}</td>'
            f"{_cell('tags', tags)}"
            f'<td class="files">{links}</td>'
            f'<td class="msg">{e(flow.get("message"))}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def _cell(label: str, value: object) -> str:
    """A plain cell of the table; an empty one (``-``) is left out of the narrow layout."""
    if value in (None, ""):
        return f'<td class="none" data-label="{label}">-</td>'
    return f'<td data-label="{label}">{e(value)}</td>'


# --- details ---------------------------------------------------------------------------------


def details(flows: list[Mapping[str, Any]], files: Files) -> list[str]:
    """One section per flow that has something to look at, failure first."""
    out: list[str] = []
    for position, flow in ordered(flows):
        if has_details(flow):
            out += _section(flow, position, files)
    return out


def _section(flow: Mapping[str, Any], position: int, files: Files) -> list[str]:
    tries = history(flow)
    attempts = f" · {len(tries)} attempts" if len(tries) > 1 else ""
    out = [
        f'<section class="flow" id="{e(anchor(flow, position))}" {_filter_attrs(flow)}>'
        f"<h3>{_badges(flow)} {e(flow.get('name'))} <span class=slug>{e(flow.get('slug'))}"
        f"{e(attempts)}</span></h3>"
    ]
    out += _error(flow)
    out += _steps(flow)
    out += _resources_line(flow)
    links = file_links(flow, files)
    result = flow.get("result")
    if isinstance(result, str) and result:
        links.append(f'<a href="{e(files.href(result))}">result.json</a>')
    if links:
        out.append(f'<p class="files">files: {" · ".join(links)}</p>')
    out += _trace(flow, files)
    out += _tails(flow, files)
    out += _console_errors(flow, files)
    out += _attempts(tries, files)
    out += _images(flow, files)
    out.append("</section>")
    return out


def _error(flow: Mapping[str, Any]) -> list[str]:
    """The flow's message, and the full text of its failure when there is more to it
    (Playwright's expected and received values and call log, a traceback)."""
    out = []
    message = str(flow.get("message") or "")
    if message:
        # A flow that passed or was skipped says how, not what went wrong.
        kind = "error" if flow.get("status") in BAD_STATUSES else "message"
        out.append(f'<pre class="{kind}">{e(message)}</pre>')
    full = flow.get("details")
    if isinstance(full, str) and full.strip() and full.strip() != message.strip():
        out.append(
            f'<details class="full-error" open><summary>error details</summary>'
            f"<pre>{e(full.strip())}</pre></details>"
        )
    return out


def _steps(flow: Mapping[str, Any]) -> list[str]:
    """A steps flow's steps with their durations; the one that failed is marked."""
    steps = [step for step in flow.get("steps") or () if isinstance(step, Mapping)]
    if not isinstance(flow.get("steps"), list) or not steps:
        return []
    failed = flow.get("failed_step") if flow.get("status") != "passed" else None
    out = ['<ol class="steps">']
    for index, step in enumerate(steps):
        seconds = num(step.get("duration_s"))
        if index == failed:
            kind, note = "step-failed", f"failed after {secs(seconds)}"
        elif seconds is None:
            kind, note = "step-not-run", "not run"
        else:
            kind, note = "step-ok", secs(seconds)
        current = ' aria-current="step"' if index == failed else ""
        out.append(
            f'<li class="{kind}"{current}><span class="step-label">{e(step.get("label"))}</span>'
            f'<span class="step-time">{e(note)}</span></li>'
        )
    out.append("</ol>")
    return out


def _resources_line(flow: Mapping[str, Any]) -> list[str]:
    """What the flow's processes used in its last attempt, when the report says."""
    cpu, peak = _usage(flow)
    if cpu is None and peak is None:
        return []
    memory = "unknown" if peak is None else f"{peak:.1f} MiB"
    return [f'<p class="usage">resources: CPU {e(secs(cpu))} · peak memory {memory}</p>']


def _trace(flow: Mapping[str, Any], files: Files) -> list[str]:
    """Each Playwright trace, with the exact command that opens it in the trace viewer."""
    out = []
    for path in strings(flow.get("artifacts")):
        if path.rsplit("/", 1)[-1].endswith(".zip") and "trace" in path.rsplit("/", 1)[-1]:
            command = f"python -m playwright show-trace {shlex.quote(files.absolute(path))}"
            out.append(
                f'<p class="trace">trace: <a href="{e(files.href(path))}">{e(path)}</a>'
                f"<br><code>{e(command)}</code></p>"
            )
    return out


def _tails(flow: Mapping[str, Any], files: Files) -> list[str]:
    """The last lines of the last attempt's stdout and stderr (empty ones on one line)."""
    logs = mapping(flow.get("logs"))
    out, empty = [], []
    for name in ("stdout", "stderr"):
        lines = files.tail(logs.get(name), TAIL_LINES)
        if lines is None:
            continue
        if not lines:
            empty.append(name)
            continue
        title = f"{name}, last {TAIL_LINES} lines" if len(lines) == TAIL_LINES else name
        out.append(
            f'<div class="tail" data-log="{name}"><div class="tail-name">{title}</div>'
            f"<pre>{e(chr(10).join(lines))}</pre></div>"
        )
    if empty:
        out.append(f'<p class="tail-empty">{" and ".join(empty)}: empty</p>')
    return out


def _console_errors(flow: Mapping[str, Any], files: Files) -> list[str]:
    """console.error() messages and uncaught errors of a browser flow's pages."""
    for path in strings(flow.get("artifacts")):
        if path.rsplit("/", 1)[-1] != "console.log":
            continue
        lines = [line for line in files.tail(path, 400) or () if line.startswith("[") and
                 any(marker in line for marker in _CONSOLE_ERRORS)]  # fmt: skip
        if lines:
            shown = e("\n".join(lines[-TAIL_LINES:]))
            return [
                f'<div class="tail" data-log="console"><div class="tail-name">console errors '
                f"({len(lines)})</div><pre>{shown}</pre></div>"
            ]
    return []


def _attempts(tries: list[Mapping[str, Any]], files: Files) -> list[str]:
    """Every attempt of a retried flow: status, start, duration, worker, directory, message."""
    if len(tries) < 2:
        return []
    out = [
        '<table class="attempts"><tr><th>attempt</th><th>status</th><th>started</th>'
        "<th>duration</th><th>worker</th><th>directory</th><th>message</th></tr>"
    ]
    for attempt in tries:
        directory = attempt.get("dir")
        cell = (
            f'<a href="{e(files.href(directory))}">{e(directory)}</a>'
            if isinstance(directory, str) and directory
            else "-"
        )
        status = attempt.get("status")
        message = attempt.get("message")
        out.append(
            f"<tr><td>{e(attempt.get('attempt'))}</td>"
            f'<td><span class="badge s-{status_class(status)}">{e(status)}</span></td>'
            f'<td data-label="started">{e(secs(attempt.get("started_s")))}</td>'
            f'<td data-label="took">{e(secs(attempt.get("duration_s")))}</td>'
            f'<td data-label="on">{e(attempt.get("worker") or "-")}</td>'
            f'<td data-label="dir">{cell}</td>'
            f'<td class="msg{"" if message else " none"}">{e(message)}</td></tr>'
        )
    out.append("</table>")
    return out


def _images(flow: Mapping[str, Any], files: Files) -> list[str]:
    out = []
    for path in strings(flow.get("artifacts")):
        uri = files.image(path)
        if uri is not None:
            out.append(
                f'<figure><img src="{e(uri)}" alt="{e(path)}" data-artifact="{e(path)}">'
                f"<figcaption>{e(path)}</figcaption></figure>"
            )
    return out

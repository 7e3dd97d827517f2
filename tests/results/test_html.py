"""The HTML report: the renderer (escaping, links, images, odd reports) and real pages.

The end-to-end test runs a real run-set through pytest, opens the report.html it wrote in
headless Chromium from a file:// URL, and checks what a reader sees and can do with it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from browser_support import launch_chromium, serve_example_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import flows_by_name, load_report, wait_for
from pytest_runset.results.html import (
    INLINE_IMAGE_LIMIT,
    render_html,
    write_html,
)
from pytest_runset.session.html_copy import html_copy_target

EVIL = "<script>alert(1)</script>"


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour (no imaging library needed)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def flow(name: str, status: str = "passed", **extra: Any) -> dict[str, Any]:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"
    entry: dict[str, Any] = {
        "name": name,
        "slug": slug,
        "status": status,
        "attempts": 1,
        "duration_s": 1.0,
        "started_s": 0.5,
        "worker": "gw0",
        "dir": slug,
        "logs": {"stdout": f"{slug}/stdout.log", "stderr": f"{slug}/stderr.log"},
        "artifacts": [],
        "tags": [],
        "persona": None,
        "message": "",
    }
    entry.update(extra)
    return entry


def report(*flows: dict[str, Any], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": "pytest-runset/report@1",
        "run_id": "r1",
        "runset": {"name": "demo", "file": "/x/run-set.toml", "sha256": "ab" * 32},
        "status": "failed",
        "started_at": "2026-11-22T06:00:00.000Z",
        "finished_at": "2026-11-22T06:00:03.000Z",
        "wall_s": 3.0,
        "workers": 2,
        "flows": list(flows),
        "summary": {"parallelism_efficiency": 0.5, "lower_bound_s": 1.0, "sum_duration_s": 3.0},
    }
    data.update(extra)
    return data


def hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', page)


# --- renderer --------------------------------------------------------------------------------


def test_every_report_value_is_escaped(tmp_path: Path) -> None:
    nasty = flow(
        EVIL,
        "failed",
        message='<img src=x onerror="alert(2)">',
        persona="<b onmouseover=alert(3)>",
        tags=["<svg onload=alert(4)>"],
        worker='"><script>alert(5)</script>',
        artifacts=["x/<iframe>.txt"],
        history=[{"attempt": 1, "status": "<i>", "dir": "<u>", "message": "</pre><script>"}],
    )
    page = render_html(report(nasty, runset={"name": EVIL, "file": EVIL}), tmp_path)
    # The page's own script is the only one, and no tag from the report made it in.
    assert page.count("<script") == 1
    for tag in ("<img", "<b ", "<svg onload", "<iframe", "<u>", "<i>"):
        assert tag not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page


def test_script_is_allowed_by_hash_and_nothing_else(tmp_path: Path) -> None:
    page = render_html(report(flow("a")), tmp_path)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy is not None
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    rules = html.unescape(policy.group(1))
    assert f"script-src 'sha256-{digest}'" in rules
    assert "default-src 'none'" in rules
    assert "img-src data:" in rules


def test_links_are_relative_to_where_the_page_is_written(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "r1"
    data = report(flow("a b", artifacts=["a-b/trace.zip", "a-b/sub dir/x#1.txt"]))
    beside = render_html(data, run_dir)
    assert "a-b/stdout.log" in hrefs(beside)
    assert "a-b/trace.zip" in hrefs(beside)
    assert "a-b/sub%20dir/x%231.txt" in hrefs(beside)  # quoted, so '#' is not a fragment

    elsewhere = render_html(data, run_dir, tmp_path / "site" / "ci")
    assert "../../results/r1/a-b/stdout.log" in hrefs(elsewhere)
    assert "../../results/r1/a-b/trace.zip" in hrefs(elsewhere)


def test_no_report_value_becomes_a_script_url(tmp_path: Path) -> None:
    data = report(flow("a", artifacts=["javascript:alert(1)"], logs={"stdout": "data:x,1"}))
    for href in hrefs(render_html(data, tmp_path)):
        assert not href.lower().startswith(("javascript:", "data:")), href


def test_small_screenshots_are_embedded_large_ones_linked(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    small = png_bytes(4, 3, (0, 200, 0))
    (tmp_path / "a" / "small.png").write_bytes(small)
    (tmp_path / "a" / "big.png").write_bytes(
        png_bytes(1, 1, (0, 0, 0)) + b"\0" * INLINE_IMAGE_LIMIT
    )
    (tmp_path / "a" / "fake.png").write_bytes(b"<script>alert(1)</script>")
    artifacts = ["a/small.png", "a/big.png", "a/fake.png", "a/missing.png"]
    page = render_html(report(flow("a", "failed", artifacts=artifacts)), tmp_path)
    uri = "data:image/png;base64," + base64.b64encode(small).decode()
    assert f'src="{uri}"' in page
    assert page.count("<img ") == 1  # only the small real PNG
    for name in ("big.png", "fake.png", "missing.png"):
        assert f"a/{name}" in hrefs(page)


def test_reports_with_missing_or_odd_fields_still_render(tmp_path: Path) -> None:
    odd: list[Any] = [
        {"name": "bare", "slug": "bare", "status": "passed", "worker": "gw0", "started_s": 0},
        {"status": "weird", "logs": "x", "artifacts": 5, "history": "x", "tags": None},
        {"name": 3, "slug": None, "started_s": "abc", "duration_s": None, "worker": "gw1"},
        {"name": "never", "status": "not_run", "attempts": 0, "started_s": None},
        "not an object",
    ]
    for data in (report(*odd), {"flows": "nope"}, {}, report(summary=None, runset=[])):
        page = render_html(data, tmp_path)
        assert page.startswith("<!DOCTYPE html>")
        assert page.rstrip().endswith("</html>")
    page = render_html(report(*odd), tmp_path)
    assert page.count('class="flow-row"') == 4
    assert page.count('class="bar ') == 1  # only "bare" says where and when it ran


def test_resources_and_containment_are_shown_where_the_report_has_them(tmp_path: Path) -> None:
    def used(cpu: object, peak: object) -> dict[str, Any]:
        return {"resources": {"cpu_s": cpu, "peak_memory_bytes": peak}}

    data = report(
        flow("hog", "failed", **used(0.514, 200 * 2**20), message="memory limit exceeded"),
        flow("light", **used(0.02, 3 * 2**20)),
        flow("unmeasured", "failed", **used(1.5, None)),
        flow("older", "failed"),
        flow("never", "not_run", attempts=0, **used(0.0, None)),
        flow("hostile", "failed", **used(10**400, "lots")),
        flow("odd", "failed", resources=["not", "a", "mapping"]),
        # A steps flow: its browser is driven from the worker, no process of its own.
        flow("steps", "failed", **used(0.0, 0)),
        containment="process-group",
        limits_enforced=False,
        paused_s=7.25,
    )
    page = render_html(data, tmp_path)
    # The header: the tier, limits that did not hold, the time spent paused.
    assert "<tr><td>containment</td><td>process-group</td></tr>" in page
    assert "memory_max and pids_max were not enforced" in page
    assert "<tr><td>paused</td><td>7.25s</td></tr>" in page
    # The table: CPU seconds and peak MiB, sortable by their value; "-" where unknown.
    cells = {
        slug: re.findall(
            r'<td class="num[^"]*" data-label="[^"]*" data-value="([^"]*)">([^<]*)</td>', row
        )[2:]
        for slug, row in re.findall(r'data-slug="([^"]*)">(.*?)</tr>', page, re.S)
    }
    assert cells["hog"] == [("0.514", "0.51s"), ("200.0", "200.0")]
    assert cells["light"] == [("0.02", "0.02s"), ("3.0", "3.0")]
    assert cells["unmeasured"] == [("1.5", "1.50s"), ("-1", "-")]
    for slug in ("older", "never", "hostile", "odd", "steps"):
        assert cells[slug] == [("-1", "-"), ("-1", "-")], slug
    assert 'data-col="6" data-numeric data-desc title="CPU seconds">cpu</th>' in page
    assert 'data-col="7" data-numeric data-desc title="peak memory">peak MiB</th>' in page
    # The details of a flow that has some: what its processes used.
    section = r'<section class="flow" id="flow-([^"]*)"(.*?)</section>'
    sections = dict(re.findall(section, page, re.S))
    assert "resources: CPU 0.51s · peak memory 200.0 MiB" in sections["hog"]
    assert "resources: CPU 1.50s · peak memory unknown" in sections["unmeasured"]
    for slug in ("older", "hostile", "odd", "steps"):
        assert "resources:" not in sections[slug], slug

    # A report of an older release (or a merged one) says nothing about containment; a run
    # in cgroups that enforced its limits and was never paused shows the tier only.
    assert "<td>containment</td>" not in render_html(report(flow("a")), tmp_path)
    plain = render_html(report(flow("a"), containment="cgroup", limits_enforced=True), tmp_path)
    assert "<tr><td>containment</td><td>cgroup</td></tr>" in plain
    assert "not enforced" not in plain
    assert "<td>paused</td>" not in plain


def test_timeline_has_one_bar_per_flow_that_ran_in_its_worker_lane(tmp_path: Path) -> None:
    data = report(
        flow("one", worker="gw0", started_s=0.0, duration_s=1.0),
        flow("two", worker="gw1", started_s=0.5, duration_s=2.0),
        flow("three", worker="gw0", started_s=1.0, duration_s=1.0),
        flow("skip", "skipped", attempts=0, started_s=None, worker=None),
        flow("shard", worker="gw0", shard=2),
    )
    page = render_html(data, tmp_path)
    lanes = re.findall(r'<div class="lane" data-worker="([^"]*)">(.*?)</div></div>', page, re.S)
    bars = {lane: re.findall(r'data-slug="([^"]*)"', body) for lane, body in lanes}
    assert bars == {"gw0": ["one", "three"], "gw1": ["two"], "shard 2 gw0": ["shard"]}


def test_clicks_lead_to_details_or_to_the_row(tmp_path: Path) -> None:
    page = render_html(report(flow("good"), flow("bad", "failed")), tmp_path)
    assert 'id="row-flow-good"' in page
    assert '<section class="flow" id="flow-bad"' in page
    assert 'id="flow-good"' not in page  # nothing more to say about a plain pass
    bars = dict(re.findall(r'class="bar [^"]*" href="#([^"]*)"[^>]*data-slug="([^"]*)"', page))
    assert bars == {"row-flow-good": "good", "flow-bad": "bad"}
    assert '<a href="#flow-bad">bad</a>' in page
    assert '<a href="#flow-good">' not in page


def test_write_html_and_copy_names(tmp_path: Path) -> None:
    target = write_html(report(flow("a")), tmp_path / "run", tmp_path / "deep" / "page.html")
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["page.html"]  # no temp file left
    first = html_copy_target(tmp_path / "page.html", "Smoke Tests", [])
    assert first.name == "page-smoke-tests.html"
    second = html_copy_target(tmp_path / "page.html", "Smoke Tests", [first])
    assert second.name == "page-smoke-tests-2.html"


def test_failures_come_first_then_flaky_then_the_rest_in_file_order(tmp_path: Path) -> None:
    data = report(
        flow("a"),
        flow("b", "timeout"),
        flow("c", flaky=True, attempts=2),
        flow("d", "failed"),
        flow("e", "skipped", attempts=0),
        flow("f", "error"),
    )
    page = render_html(data, tmp_path)
    assert re.findall(r'<tr class="flow-row"[^>]*data-slug="([^"]*)"', page) == [
        "b", "d", "f", "c", "a", "e"
    ]  # fmt: skip
    assert re.findall(r'<section class="flow" id="flow-([^"]*)"', page) == ["b", "d", "f", "c"]
    # One toggle per status present and one for flaky flows, each with its count.
    buttons = re.findall(
        r'data-filter="([^"]*)" [^>]*>(?:<span[^>]*></span>)?[^<]*<span class="n">(\d+)', page
    )
    assert buttons == [
        ("all", "6"), ("failed", "1"), ("error", "1"), ("timeout", "1"), ("flaky", "1"),
        ("passed", "2"), ("skipped", "1"),
    ]  # fmt: skip


def test_details_show_steps_logs_console_errors_trace_and_attempts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "j").mkdir(parents=True)
    (run_dir / "j" / "stdout.log").write_text(
        "".join(f"line {n}\n" for n in range(100)), encoding="utf-8"
    )
    (run_dir / "j" / "stderr.log").write_text("", encoding="utf-8")
    (run_dir / "j" / "console.log").write_text(
        "[   0.100s] console.log: fine\n[   0.200s] console.error: <b>bad</b>\n"
        "[   0.300s] pageerror: TypeError: x is undefined\n",
        encoding="utf-8",
    )
    steps = [
        {"label": 'goto "/"', "duration_s": 0.25},
        {"label": 'click "#pay"', "duration_s": 5.0},
        {"label": 'expect_visible "h1"', "duration_s": None},
    ]
    history = [
        {"attempt": 1, "status": "failed", "dir": "j-retry0", "duration_s": 4.0,
         "started_s": 0.0, "worker": "gw1", "message": "first"},
        {"attempt": 2, "status": "failed", "dir": "j", "duration_s": 5.5,
         "started_s": 4.5, "worker": "gw0", "message": "second"},
    ]  # fmt: skip
    entry = flow(
        "j",
        "failed",
        attempts=2,
        started_s=4.5,
        duration_s=5.5,
        message='step 2/3 (click "#pay"): Timeout',
        details="Timeout 5000ms exceeded.\nCall log:\n  - waiting for #pay",
        steps=steps,
        failed_step=1,
        history=history,
        artifacts=["j/console.log", "j/trace.zip"],
    )
    page = render_html(report(entry, wall_s=10.0), run_dir)
    section = re.search(r'<section class="flow" id="flow-j".*?</section>', page, re.S)
    assert section is not None
    body = section.group(0)
    assert re.findall(r'<li class="([^"]*)"', body) == ["step-ok", "step-failed", "step-not-run"]
    assert '<span class="step-time">failed after 5.00s</span>' in body
    assert "Call log:" in body
    assert "line 99" in body
    assert "line 79" not in body  # the last 20 lines only
    assert "stdout, last 20 lines" in body
    assert "stderr: empty" in body
    assert "console errors (2)" in body
    assert "&lt;b&gt;bad&lt;/b&gt;" in body
    assert "console.log: fine" not in body
    trace = shlex.quote(str(run_dir / "j" / "trace.zip"))
    assert f"<code>python -m playwright show-trace {html.escape(trace)}</code>" in body
    assert re.findall(r"<tr><td>(\d)</td>", body) == ["1", "2"]
    # Both attempts are on the timeline, each in its worker's lane; the first one hatched.
    bars = re.findall(r'<a class="bar ([^"]*)"[^>]*data-attempt="(\d)"', page)
    assert bars == [("s-failed", "2"), ("s-failed retry", "1")]


# --- real runs -------------------------------------------------------------------------------

SHOT_SCRIPT = (
    "import json, os, struct, zlib\n"
    + inspect.getsource(png_bytes)
    + """
flow_dir = os.environ["RUNSET_FLOW_DIR"]
with open(os.path.join(flow_dir, "shot.png"), "wb") as handle:
    handle.write(png_bytes(40, 20, (200, 30, 30)))
with open(os.environ["RUNSET_REPORT"], "w") as handle:
    json.dump({"status": "failed", "message": "saw <b>red</b>", "artifacts": ["shot.png"]}, handle)
"""
)

RUNSET = f"""
[runset]
name = "html demo"
concurrency = 2

[personas.alice]
username = "alice"

[[flows]]
name = "ok one"
command = [{sys.executable!r}, "-c", "print('hi')"]
tags = ["smoke"]
persona = "alice"

[[flows]]
name = "browser fails"
steps = [
  {{ goto = "/no-such-page" }},
  {{ goto = "/login" }},
  {{ click = "#missing", timeout = 0.5 }},
  {{ expect_visible = "h1" }},
]

[[flows]]
name = "{EVIL}"
command = [{sys.executable!r}, "-c", "import time; time.sleep(0.3)"]

[[flows]]
name = "fails"
command = [
  {sys.executable!r}, "-c",
  "import sys; print('out line'); sys.exit('boom <img src=x onerror=alert(2)>')",
]

[[flows]]
name = "skipped one"
command = ["true"]
skip = "not today"

[[flows]]
name = "screenshot"
command = [{sys.executable!r}, "shot.py"]

[[flows]]
name = "flaky one"
retries = 1
command = [
  {sys.executable!r}, "-c", "import os, sys; sys.exit(os.environ['RUNSET_ATTEMPT'] == '1')",
]
"""


example_app = pytest.fixture(scope="module")(serve_example_app)


@pytest.fixture
def html_run(
    pytester: pytest.Pytester, example_app: str
) -> tuple[pytest.RunResult, dict[str, Any], Path]:
    pytester.path.joinpath("run-set.toml").write_text(RUNSET, encoding="utf-8")
    pytester.path.joinpath("shot.py").write_text(SHOT_SCRIPT, encoding="utf-8")
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "r1", "-p", "no:cacheprovider",
        "--runset-html", "site/page.html", "--runset-base-url", example_app,
    )  # fmt: skip
    run_dir = pytester.path / "runset-results" / "r1"
    return result, load_report(run_dir), run_dir


# The elements shown whose right edge is beyond the window's.
STICKING_OUT = """() => Array.from(document.body.querySelectorAll('*'))
  .filter(el => el.getClientRects().length && el.getBoundingClientRect().right > innerWidth + 1)
  .map(el => el.tagName + '.' + el.className)"""


def _visible_slugs(rows: Any) -> list[str]:
    return [r.get_attribute("data-slug") for r in rows.all() if r.is_visible()]


def _keep_for_ci(*files: Path) -> None:
    """CI keeps what lands in $CI_ARTIFACTS_DIR (see .ci/run), beside the run dir's copies."""
    if os.environ.get("CI_ARTIFACTS_DIR"):
        keep = Path(os.environ["CI_ARTIFACTS_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy2(file, keep / file.name)


def test_report_html_in_a_browser(html_run: tuple[pytest.RunResult, dict[str, Any], Path]) -> None:
    from playwright.sync_api import sync_playwright

    result, data, run_dir = html_run
    assert result.ret == 1
    page_file = run_dir / "report.html"
    assert page_file.is_file()
    flows = flows_by_name(data)
    ran = [f for f in data["flows"] if f["attempts"] > 0]
    assert len(ran) == 6
    assert flows["flaky one"]["flaky"] is True
    # report.json carries what the page shows: the steps with their times, the failing one,
    # the full error, and when and where every attempt ran.
    browser_flow = flows["browser fails"]
    assert [step["duration_s"] is None for step in browser_flow["steps"]] == [
        False, False, False, True
    ]  # fmt: skip
    assert browser_flow["failed_step"] == 2
    assert "Call log" in browser_flow["details"]
    first, second = flows["flaky one"]["history"]
    assert first["started_s"] < second["started_s"] == flows["flaky one"]["started_s"]
    assert first["worker"]
    assert second["worker"] == flows["flaky one"]["worker"]
    # Failure first: what went wrong in file order, then the flaky flow, then the rest.
    failing = ["browser-fails", "fails", "screenshot"]
    rest = ["ok-one", "script-alert-1-script", "skipped-one"]
    shown_order = [*failing, "flaky-one", *rest]

    dialogs: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri())

            rows = page.locator("tr.flow-row")
            assert rows.count() == 7
            assert [r.get_attribute("data-slug") for r in rows.all()] == shown_order
            names = [
                rows.nth(i).locator("td").nth(1).evaluate("td => td.firstChild.textContent")
                for i in range(7)
            ]
            assert EVIL in names  # literal text
            sections = page.locator("section.flow")
            assert sections.first.get_attribute("id") == "flow-browser-fails"

            # The failing browser flow's details: the failing step with its duration, the
            # steps after it not run, the ends of stdout and stderr, console errors, the trace.
            details = page.locator("#flow-browser-fails")
            steps = details.locator("ol.steps li")
            assert steps.count() == 4
            failed = details.locator("li.step-failed")
            assert failed.count() == 1
            assert 'click "#missing"' in failed.inner_text()
            assert re.search(r"failed after 0\.\d\ds", failed.inner_text())
            assert re.fullmatch(r"\d+\.\d\ds", steps.nth(1).locator(".step-time").inner_text())
            assert steps.nth(3).get_attribute("class") == "step-not-run"
            assert "Timeout 500ms exceeded" in details.locator("pre.error").inner_text()
            assert "Call log" in details.locator("details.full-error pre").inner_text()
            stdout = details.locator('.tail[data-log="stdout"] pre').inner_text()
            assert 'step 3/4 (click "#missing") failed after' in stdout
            assert details.locator(".tail-empty").inner_text() == "stderr: empty"
            assert "404" in details.locator('.tail[data-log="console"] pre').inner_text()
            trace_file = run_dir / "browser-fails" / "trace.zip"
            assert trace_file.is_file()
            command = details.locator(".trace code").inner_text()
            assert command == f"python -m playwright show-trace {trace_file}"
            fails = page.locator("#flow-fails")
            assert "out line" in fails.locator('.tail[data-log="stdout"] pre').inner_text()
            assert "boom" in fails.locator('.tail[data-log="stderr"] pre').inner_text()

            # The timeline: a bar per attempt in the lane of its worker; the retried flow's
            # first attempt is drawn too.
            bars = page.locator("#timeline .bar")
            assert bars.count() == len(ran) + 1
            for entry in ran:
                bar = page.locator(f'#timeline .bar[data-slug="{entry["slug"]}"]:not(.retry)')
                assert bar.count() == 1
                lane = bar.locator("xpath=ancestor::div[@class='lane']")
                assert lane.get_attribute("data-worker") == entry["worker"]
                assert entry["name"] in (bar.get_attribute("title") or "")
            retry = page.locator("#timeline .bar.retry")
            assert retry.get_attribute("data-slug") == "flaky-one"
            assert "attempt 1 of 2" in (retry.get_attribute("title") or "")
            assert page.locator("#flow-flaky-one table.attempts tr").count() == 3

            # Status filters, with counts, several at once; the text box narrows further.
            failed_button = page.locator('.filters button[data-filter="failed"]')
            assert failed_button.inner_text().split() == ["failed", "3"]
            flaky_button = page.locator('.filters button[data-filter="flaky"]')
            assert flaky_button.inner_text().split() == ["flaky", "1"]
            failed_button.click()
            assert _visible_slugs(rows) == failing
            flaky_button.click()
            assert flaky_button.get_attribute("aria-pressed") == "true"
            assert _visible_slugs(rows) == [*failing, "flaky-one"]
            assert page.locator("section.flow:visible").count() == 4
            page.locator("#filter-text").fill("shot")
            assert _visible_slugs(rows) == ["screenshot"]
            page.locator('.filters button[data-filter="all"]').click()
            assert failed_button.get_attribute("aria-pressed") == "false"
            page.locator("#filter-text").fill("alice")
            assert _visible_slugs(rows) == ["ok-one"]
            page.locator("#filter-text").fill("")
            assert all(r.is_visible() for r in rows.all())

            # Sorting: the duration header puts the slowest flow first, the flow header
            # gives file order, the status header failure first again.
            page.locator('#flows th[data-col="2"]').click()
            order = [r.get_attribute("data-slug") for r in rows.all()]
            by_duration = sorted(
                data["flows"], key=lambda f: -f["duration_s"] if f["attempts"] else 1.0
            )
            assert order[0] == by_duration[0]["slug"]
            assert order[-1] == "skipped-one"
            # The peak memory header puts the flow whose processes used the most first.
            peaks = {
                f["slug"]: f["resources"]["peak_memory_bytes"] or -1 if f["attempts"] else -1
                for f in data["flows"]
            }
            page.locator('#flows th[data-col="7"]').click()
            order = [r.get_attribute("data-slug") for r in rows.all()]
            assert peaks[order[0]] == max(peaks.values())
            page.locator('#flows th[data-col="1"]').click()
            order = [r.get_attribute("data-slug") for r in rows.all()]
            assert order == [f["slug"] for f in data["flows"]]
            page.locator('#flows th[data-col="0"]').click()
            assert [r.get_attribute("data-slug") for r in rows.all()] == shown_order

            # The screenshot is embedded and decodes as a 40x20 image.
            image = page.locator('img[data-artifact="screenshot/shot.png"]')
            assert (image.get_attribute("src") or "").startswith("data:image/png;base64,")
            assert image.evaluate("img => img.complete && img.naturalWidth") == 40

            # The browser flow's failure screenshot is embedded, its trace linked.
            shot = page.locator('img[data-artifact="browser-fails/failure.png"]')
            assert shot.evaluate("img => img.complete && img.naturalWidth") > 0
            trace = page.locator("#flow-browser-fails .trace a")
            assert Path(unquote(urlparse(trace.evaluate("a => a.href")).path)) == trace_file

            # Links to logs and artifacts resolve to the run's files.
            for entry in ran:
                link = page.locator(f'tr[data-slug="{entry["slug"]}"] a', has_text="stderr")
                target = Path(unquote(urlparse(link.evaluate("a => a.href")).path))
                assert target == run_dir / entry["logs"]["stderr"]
                assert target.is_file()
            assert "boom <img src=x onerror=alert(2)>" in page.locator("#flows").inner_text()

            wide = run_dir / "report-html-1400.png"
            page.screenshot(path=str(wide), full_page=True)

            # At 400 px the page reads without sideways scrolling: rows become blocks, and
            # nothing sticks out to the right (not even inside a box that scrolls itself).
            page.set_viewport_size({"width": 400, "height": 900})
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 400
            assert page.evaluate(STICKING_OUT) == []
            attempts = page.locator("#flow-flaky-one table.attempts tr")
            assert attempts.first.is_hidden()  # the header: each cell says what it is
            directory = attempts.nth(2).locator('td[data-label="dir"]')
            assert directory.inner_text() == "flaky-one-retry1"
            assert directory.is_visible()
            assert rows.first.is_visible()
            assert page.locator("#flows thead").is_hidden()
            assert failed.is_visible()
            narrow = run_dir / "report-html-400.png"
            page.screenshot(path=str(narrow), full_page=True)
            assert wide.stat().st_size > 0
            assert narrow.stat().st_size > 0
            example = run_dir / "report-html-example.html"
            shutil.copy2(page_file, example)
            _keep_for_ci(wide, narrow, example)

            # Without JavaScript the page still reads: every row is there, filters hidden.
            context = browser.new_context(java_script_enabled=False)
            plain = context.new_page()
            plain.goto(page_file.as_uri())
            assert plain.locator("tr.flow-row").count() == 7
            assert plain.locator("#filters").is_hidden()
            assert plain.locator("#timeline .bar").count() == len(ran) + 1
            context.close()
        finally:
            browser.close()
    assert dialogs == []
    assert requests
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert flows["screenshot"]["artifacts"] == ["screenshot/shot.png"]


def test_runset_html_copy_links_into_the_run(
    html_run: tuple[pytest.RunResult, dict[str, Any], Path],
) -> None:
    _, data, run_dir = html_run
    copy = run_dir.parent.parent / "site" / "page.html"
    page = copy.read_text(encoding="utf-8")
    files = [h for h in hrefs(page) if not h.startswith("#")]
    assert files
    for href in files:
        assert (copy.parent / unquote(href)).resolve().exists(), href
    assert "../runset-results/r1/fails/stderr.log" in files
    assert page.count("<script") == 1
    assert data["flows"][0]["index"] == 0


def test_runset_html_with_two_runsets(pytester: pytest.Pytester) -> None:
    for name in ("alpha", "beta"):
        pytester.path.joinpath(f"{name}.toml").write_text(
            f'[runset]\nname = "{name}"\n[[flows]]\nname = "{name} flow"\ncommand = ["true"]\n',
            encoding="utf-8",
        )
    result = pytester.runpytest_subprocess(
        "--runset", "alpha.toml", "--runset", "beta.toml", "--runset-run-id", "two",
        "--runset-html", "out/page.html", "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == 0
    out = pytester.path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["page-alpha.html", "page-beta.html"]
    assert "alpha flow" in (out / "page-alpha.html").read_text(encoding="utf-8")
    assert "beta flow" in (out / "page-beta.html").read_text(encoding="utf-8")


def test_interrupted_and_resumed_runs_rewrite_report_html(
    pytester: pytest.Pytester, spawn_pytest: Callable[..., subprocess.Popen[bytes]]
) -> None:
    pytester.path.joinpath("run-set.toml").write_text(
        f"""
[[flows]]
name = "quick"
command = ["true"]
[[flows]]
name = "long"
command = [{sys.executable!r}, "-c", "import os, time; os.path.exists('go') or time.sleep(120)"]
""",
        encoding="utf-8",
    )
    run_dir = pytester.path / "runset-results" / "i1"
    proc = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "i1")
    assert wait_for((run_dir / "long" / "stdout.log").exists, 60)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert load_report(run_dir)["status"] == "interrupted"
    assert 'data-status="interrupted"' in page

    pytester.path.joinpath("go").write_text("", encoding="utf-8")
    resumed = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-resume", "i1", "-p", "no:cacheprovider"
    )
    assert resumed.ret == 0
    assert load_report(run_dir)["status"] == "passed"
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'data-status="interrupted"' not in page
    assert page.count('data-status="passed"') >= 2
    json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


def test_a_page_that_cannot_be_written_costs_only_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_runset.results.report import RunDirectory

    directory = RunDirectory(tmp_path, "r1")
    directory.open()
    try:
        (directory.path / "report.html").mkdir()  # os.replace onto a directory fails
        target = directory.write_report(report(flow("a")))
    finally:
        directory.close()
    assert load_report(target.parent)["run_id"] == "r1"
    assert (tmp_path / "latest").is_symlink()
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pytest-runset: cannot write {directory.path / 'report.html'}: ")
    assert len(err.splitlines()) == 1


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6),
    status=st.sampled_from(["passed", "failed", "timeout", "<b>"]),
)
def test_any_text_stays_text(tmp_path: Path, texts: list[str], status: str) -> None:
    name, *rest = texts
    data = report(
        flow(name, status, message=" ".join(rest), tags=rest, persona=name, artifacts=rest),
        runset={"name": name, "file": name, "sha256": name},
        run_id=name,
    )
    page = render_html(data, tmp_path)
    assert page.count("<script") == 1
    assert page.count("</script>") == 1
    # Every '<' outside the page's own script starts one of the renderer's own tags.
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    tags = set(re.findall(r"<(/?[a-zA-Z0-9!]+)", markup))
    assert tags <= {
        "!DOCTYPE", "html", "/html", "head", "/head", "meta", "title", "/title", "style",
        "/style", "body", "/body", "h1", "/h1", "h2", "/h2", "h3", "/h3", "span", "/span",
        "table", "/table", "thead", "/thead", "tbody", "/tbody", "tr", "/tr", "th", "/th",
        "td", "/td", "div", "/div", "a", "/a", "p", "/p", "pre", "/pre", "section",
        "/section", "button", "/button", "input", "figure", "/figure",
        "img", "figcaption", "/figcaption", "details", "/details", "summary", "/summary",
        "ol", "/ol", "li", "/li", "code", "/code", "br",
        # The groups section's (results/html_groups.py): tables and small inline-SVG plots.
        "svg", "/svg", "rect", "line", "circle", "/circle", "text", "/text", "small", "/small",
    }  # fmt: skip
    assert html.escape(name, quote=True) in page


def test_runset_html_that_cannot_be_written_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("run-set.toml").write_text(
        '[[flows]]\nname = "ok"\ncommand = ["true"]\n', encoding="utf-8"
    )
    pytester.path.joinpath("blocker").write_text("a file, not a directory", encoding="utf-8")
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "w1", "-p", "no:cacheprovider",
        "--runset-html", "blocker/page.html",
    )  # fmt: skip
    assert result.ret == 0  # the run passed; only the extra copy is missing
    lines = [line for line in result.outlines if "cannot write --runset-html" in line]
    assert len(lines) == 1
    assert "blocker/page.html" in lines[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert (pytester.path / "runset-results" / "w1" / "report.html").is_file()


def test_an_artifact_path_leaving_the_run_directory_is_never_embedded(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "a").mkdir(parents=True)
    outside = png_bytes(1, 1, (1, 2, 3))
    (tmp_path / "private.png").write_bytes(outside)
    (run_dir / "a" / "link.png").symlink_to(tmp_path / "private.png")
    artifacts = ["../private.png", "a/../../private.png", "a/link.png"]
    page = render_html(report(flow("a", "failed", artifacts=artifacts)), run_dir)
    assert base64.b64encode(outside).decode() not in page
    assert "<img " not in page

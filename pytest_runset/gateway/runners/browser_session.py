"""One flow's browser session: its context and page, console log, and artifacts.

This module owns what lives and dies with one flow attempt: the fresh browser context and page
opened in the worker's warm browser (:class:`Session`, :func:`open_session`), the console and
page-error log, and the screenshots, trace and video kept when the flow ends. The browser
itself (launching, reusing, killing it) is :mod:`.browser_host`'s.

Everything here runs on the worker's flow thread (see :mod:`.inproc`), because Playwright's
sync API belongs to the thread that started it. Playwright objects come from the host, so this
module never imports Playwright itself.

Playwright never writes into the flow directory, where the flow could have planted a link for it
to follow: screenshots come back as bytes, traces and videos go to a private directory of the
worker's (0700, outside the run), and the plugin then writes each file through the attempt's
open directory (:mod:`pytest_runset.gateway.flow_dir`), replacing whatever the flow left at
that name. A trace is rewritten with the persona's secrets masked before it is kept
(:func:`pytest_runset.gateway.masking.mask_zip`); one that cannot be masked is not kept.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from pytest_runset.gateway.flow_dir import attempt_dir
from pytest_runset.gateway.masking import mask_text, mask_zip, usable
from pytest_runset.gateway.protocol import AttemptSpec
from pytest_runset.gateway.runners.browser_host import HOST, BrowserUnavailable, first_lines
from pytest_runset.gateway.runners.context_options import context_options
from pytest_runset.gateway.runners.inproc import BodyResult
from pytest_runset.gateway.runners.persona_login import StepRunner, signed_in_state

# Playwright's own defaults: actions and navigations 30 s, expectations 5 s. All are bounded
# by the flow's remaining time.
ACTION_TIMEOUT_S = 30.0
EXPECT_TIMEOUT_S = 5.0
TEARDOWN_TIMEOUT_MS = 5000.0
# Where Playwright records a context's videos, inside the session's private directory; kept
# videos are copied out of it into the flow directory.
VIDEO_DIR = "video"


class Session:
    """One flow's browser context: its page, tracing, console log, screenshots and video."""

    def __init__(self, spec: AttemptSpec, control: Any, run_step: StepRunner | None = None) -> None:
        self.spec = spec
        # Runs a persona's sign-in steps (the steps runner's executor); its state file.
        self.run_step = run_step
        self.storage_state: str | None = None
        browser = spec["browser"]
        # Only a flow with a browser opens a session: its spec has the browser's options.
        assert browser is not None
        self.options: dict[str, Any] = dict(browser)
        self.control = control
        self.flow_dir = str(spec["flow_dir"])
        self.secrets = list(spec.get("secrets") or ())
        # Playwright's own output (trace, videos) before the plugin keeps it; made on demand.
        self._private: str | None = None
        self.context: Any = None
        self.page: Any = None
        self.warnings: list[str] = []
        self.info: dict[str, Any] = {}
        self._console: Any = None
        self._opened = time.monotonic()
        self._video = self.options.get("video", "off") != "off"
        self._tracing = False

    # -- opening ------------------------------------------------------------------------------
    def open(self) -> None:
        """Launch (or reuse) the browser and open a fresh context and page.

        Raises :class:`BrowserUnavailable` when no browser can run.
        """
        started = time.monotonic()
        env = dict(os.environ)
        if self.options.get("isolation") == "process":
            env.update(self.spec["env"])
        launched = HOST.browser_for(self.options, env, self.control.remaining())
        launch_s = time.monotonic() - started
        self.storage_state = signed_in_state(self.spec, self.control, self.run_step)
        try:
            self._new_context()
        except BrowserUnavailable:
            raise
        except Exception as exc:
            if launched:
                raise BrowserUnavailable(
                    f"the browser cannot open a context: {first_lines(str(exc), 300)}"
                ) from None
            # The warm browser died between flows (killed, crashed): launch a new one.
            self._close_console()
            HOST.close_browser()
            launched = HOST.browser_for(self.options, env, self.control.remaining())
            launch_s = time.monotonic() - started
            self._new_context()
        self.info = {
            "name": self.options["name"],
            "version": HOST.version,
            "executable": HOST.executable or "playwright",
            "isolation": self.options.get("isolation", "context"),
            "launched": launched,
            "launch_s": round(launch_s, 6) if launched else 0.0,
            "pids": list(HOST.pids),
            "cookie": self.options["cookie"],
        }

    def _context_options(self) -> dict[str, Any]:
        # Device, locale, ... first; what the plugin sets itself goes on top.
        options: dict[str, Any] = context_options(self.spec, HOST.playwright)
        if self.storage_state is not None:
            options["storage_state"] = self.storage_state
        base_url = self.spec.get("base_url")
        if base_url:
            options["base_url"] = base_url
        viewport = self.options.get("viewport")
        if viewport:
            options["viewport"] = {"width": int(viewport[0]), "height": int(viewport[1])}
        if self._video:
            options["record_video_dir"] = self._private_path(VIDEO_DIR)
        return options

    def _private_path(self, name: str) -> str:
        if self._private is None:
            self._private = tempfile.mkdtemp(prefix="runset-browser-")
        return os.path.join(self._private, name)

    def _new_context(self) -> None:
        browser = HOST.browser
        self.context = browser.new_context(**self._context_options())
        remaining_ms = float(max(1, round(self.control.remaining() * 1000)))
        self.context.set_default_timeout(min(ACTION_TIMEOUT_S * 1000, remaining_ms))
        self.context.set_default_navigation_timeout(min(ACTION_TIMEOUT_S * 1000, remaining_ms))
        with attempt_dir(self.flow_dir) as directory:
            self._console = directory.open_append("console.log")
        self.context.on("console", self._on_console)
        self.context.on("page", self._watch_page)
        if self.options.get("trace", "off") != "off":
            self.context.tracing.start(
                screenshots=True, snapshots=True, sources=bool(self.spec.get("callable"))
            )
            self._tracing = True
        try:
            self.page = self.context.new_page()
        except Exception as exc:
            if not self._video or "ffmpeg" not in str(exc):
                raise
            # Playwright records video with its own ffmpeg; without it, run without video.
            self.warnings.append(
                "video not recorded: Playwright's ffmpeg is missing "
                "(python -m playwright install ffmpeg)"
            )
            self._close_console()
            with contextlib.suppress(Exception):
                self.context.close()
            self._video = False
            self._tracing = False
            self._new_context()

    # -- events (called by Playwright on the flow thread) ------------------------------------
    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._opened:8.3f}s]"

    def _write(self, line: str) -> None:
        if self._console is not None:
            with contextlib.suppress(Exception):
                text = mask_text(line.rstrip("\n"), self.secrets) + "\n"
                self._console.write(text.encode("utf-8", "replace"))
                self._console.flush()

    def _on_console(self, message: Any) -> None:
        try:
            location = message.location or {}
            where = ""
            if location.get("url"):
                where = f" ({location['url']}:{location.get('lineNumber', 0)})"
            self._write(f"{self._stamp()} console.{message.type}: {message.text}{where}")
        except Exception:
            pass

    def _watch_page(self, page: Any) -> None:
        try:
            page.on("pageerror", self._on_page_error)
        except Exception:
            pass

    def _on_page_error(self, error: Any) -> None:
        try:
            stack = str(getattr(error, "stack", "") or "")
            text = stack or f"{getattr(error, 'name', 'Error')}: {getattr(error, 'message', error)}"
            self._write(f"{self._stamp()} pageerror: {text}")
        except Exception:
            pass

    # -- closing -------------------------------------------------------------------------------
    def finish(self, failed: bool, expired: bool = False) -> None:
        """Screenshots, trace and video as the options say; close the context (never raises).

        ``expired``: the flow timed out or was interrupted. Its browser goes too, warm or not:
        nothing a timed-out flow ran on is trusted by the next flow.
        """
        context = self.context
        if context is None:
            self._close_console()
            self._remove_private()
            return
        try:
            self._finish(context, failed, expired)
        finally:
            self._close_console()
            self._remove_private()
            self.context = None

    def _finish(self, context: Any, failed: bool, expired: bool) -> None:
        pages = self._pages()
        screenshot = self.options.get("screenshot", "only-on-failure")
        if screenshot != "off" and (failed or screenshot == "on"):
            stem = "failure" if failed else "final"
            for number, page in enumerate(pages, 1):
                name = f"{stem}.png" if number == 1 else f"{stem}-{number}.png"
                shot = functools.partial(
                    self._keep_screenshot, page, name, timeout=TEARDOWN_TIMEOUT_MS
                )
                self._quietly(f"{stem} screenshot", shot)
        if self._tracing:
            trace = self.options.get("trace", "off")
            if trace == "on" or (trace == "retain-on-failure" and failed):
                path = self._private_path("trace.zip")
                self._quietly("trace", lambda: context.tracing.stop(path=path))
                self._quietly("trace", functools.partial(self._keep_trace, path))
            else:
                self._quietly("trace", context.tracing.stop)
        videos = [page.video for page in pages if getattr(page, "video", None)]
        self._quietly("closing the browser context", context.close)
        self._keep_videos(videos, failed)
        if expired or self.options.get("isolation") == "process":
            HOST.close_browser()
        else:
            # Contexts the flow opened itself do not outlive it either.
            browser = HOST.browser
            for other in list(getattr(browser, "contexts", []) or []):
                self._quietly("closing a leftover context", other.close)

    # -- keeping artifacts (written by the plugin, through the attempt's open directory) ----
    def _keep_screenshot(self, page: Any, name: str, *, timeout: float) -> None:
        data = _screenshot_with_retry(page, timeout=timeout)
        with attempt_dir(self.flow_dir) as directory:
            directory.write_bytes(name, data)

    def _keep_trace(self, path: str) -> None:
        """Keep the trace Playwright wrote to ``path`` (private) as ``trace.zip``, masked."""
        if not os.path.exists(path):
            return
        with attempt_dir(self.flow_dir) as directory:
            if not usable(self.secrets):
                directory.copy_in("trace.zip", path)
                return
            try:
                directory.write("trace.zip", lambda sink: mask_zip(path, sink, self.secrets))
            except Exception as exc:
                # Never the unmasked original: no trace is better than a leaked secret.
                raise RuntimeError(f"not kept, it cannot be masked: {exc}") from None

    def _remove_private(self) -> None:
        private, self._private = self._private, None
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)

    def _pages(self) -> list[Any]:
        try:
            return [page for page in self.context.pages if not page.is_closed()]
        except Exception:
            return []

    def _keep_videos(self, videos: list[Any], failed: bool) -> None:
        mode = self.options.get("video", "off")
        keep = mode == "on" or (mode == "retain-on-failure" and failed)
        for number, video in enumerate(videos, 1):
            name = "video.webm" if number == 1 else f"video-{number}.webm"
            if keep:
                self._quietly("video", functools.partial(self._keep_video, video, name))
            with contextlib.suppress(Exception):
                video.delete()

    def _keep_video(self, video: Any, name: str) -> None:
        # save_as works for a remote browser too (it streams the file over the connection).
        path = self._private_path(name)
        video.save_as(path)
        with attempt_dir(self.flow_dir) as directory:
            directory.copy_in(name, path)

    def _quietly(self, what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:
            self.warnings.append(f"{what} failed: {first_lines(str(exc), 200)}")

    def _close_console(self) -> None:
        console, self._console = self._console, None
        if console is not None:
            with contextlib.suppress(Exception):
                console.close()


def open_session(
    spec: AttemptSpec, control: Any, run_step: StepRunner | None = None
) -> tuple[Session, BodyResult | None]:
    """A flow's browser session, opened. When no browser can run (or the persona's sign-in
    failed), the session is already finished and the second value is the flow's ``error``
    result. ``run_step`` runs a step of the persona's sign-in."""
    session = Session(spec, control, run_step)
    try:
        session.open()
    except BrowserUnavailable as exc:
        session.finish(failed=True)
        return session, {"status": "error", "message": str(exc)}
    return session, None


def _screenshot_with_retry(page: Any, *, timeout: float) -> bytes:
    """Chromium sometimes cannot capture a page that is still settling (an error page right
    after a refused connection, say): one more try a moment later usually works."""
    try:
        data: bytes = page.screenshot(timeout=timeout)
    except Exception:
        time.sleep(0.3)
        data = page.screenshot(timeout=timeout)
    return data

"""Browsers for in-process flows: one warm browser per worker, a fresh context per flow.

Everything here except :func:`kill_flow` runs on the worker's flow thread (see
:mod:`.inproc`), because Playwright's sync API belongs to the thread that started it.
Playwright is imported lazily, at the first browser flow: without it the plugin and command
flows work, and browser flows end as ``error`` with one line saying what to install.

Processes: the Playwright driver is a child of the worker, in the worker's process group. The
browser is launched by the driver in a process group of its own, with the environment cookie
``RUNSET_FLOW_ID`` set to the worker's browser cookie (``<run_id>.browser.<worker>``), or to
the flow's own cookie with ``browser_isolation = "process"``. Killing "the flow's browser"
means a cookie sweep, which works from any thread and reaches every browser process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from pytest_runset.gateway.proctree import COOKIE_VAR, pids_with_cookie, sweep_cookie

# Looked up in this order when Playwright has no browser of its own.
SYSTEM_CHROMIUM: tuple[str, ...] = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/snap/bin/chromium",
)
# What a headless Chromium needs in a container (often as root, small /dev/shm, no network).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
INSTALL_HINT = (
    "install one with 'python -m playwright install chromium' or the system package "
    "('apt-get install chromium'), or pass --runset-browser-executable PATH"
)
NO_PLAYWRIGHT = (
    "browser flows need Playwright, which is not installed for this Python: "
    "pip install 'pytest-runset[browser]' (then a browser: python -m playwright install "
    "chromium, or apt-get install chromium)"
)
# Playwright's own defaults: actions and navigations 30 s, expectations 5 s. All are bounded
# by the flow's remaining time.
ACTION_TIMEOUT_S = 30.0
EXPECT_TIMEOUT_S = 5.0
LAUNCH_TIMEOUT_S = 60.0
TEARDOWN_TIMEOUT_MS = 5000.0
VIDEO_DIR = ".video"


class BrowserUnavailable(Exception):
    """No browser can run here; ``str()`` is one line saying what to do."""


def find_system_chromium(
    candidates: tuple[str, ...] = SYSTEM_CHROMIUM,
    which: Callable[[str], str | None] = shutil.which,
) -> str | None:
    """The first runnable system Chromium, by name on ``PATH`` or by absolute path."""
    for candidate in candidates:
        path = candidate if os.sep in candidate else which(candidate)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def resolve_executable(
    name: str, given: str | None, managed: str | None, system: Callable[[], str | None]
) -> str | None:
    """The executable to launch; ``None`` means Playwright's own browser.

    ``managed`` is where Playwright's own browser would be; ``system`` finds a system Chromium.
    Raises :class:`BrowserUnavailable` with the one line a user needs.
    """
    if given:
        path = given if os.sep in given else shutil.which(given)
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise BrowserUnavailable(
                f"browser executable {given!r} (--runset-browser-executable) does not exist or "
                f"is not executable; {INSTALL_HINT}"
            )
        return path
    if managed and os.path.isfile(managed):
        return None
    if name == "chromium":
        found = system()
        if found:
            return found
        raise BrowserUnavailable(
            "no browser found for browser flows (no Playwright browser, no chromium, "
            f"chromium-browser or google-chrome on PATH); {INSTALL_HINT}"
        )
    raise BrowserUnavailable(
        f"{name} is not installed for Playwright: run 'python -m playwright install {name}', "
        "or use --runset-browser chromium"
    )


def first_lines(text: str, limit: int = 400) -> str:
    """Playwright's message without its call log, as one line."""
    head = text.split("Call log:", maxsplit=1)[0]
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    joined = "; ".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


class Host:
    """The worker's Playwright driver and warm browser."""

    def __init__(self) -> None:
        self.playwright: Any = None
        self.browser: Any = None
        self.key: tuple[Any, ...] | None = None
        self.cookie: str | None = None
        self.pids: list[int] = []
        self.version = ""
        self.executable: str | None = None

    def _start(self) -> Any:
        if self.playwright is None:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                raise BrowserUnavailable(NO_PLAYWRIGHT) from None
            # The driver must not carry a flow's cookie: the sweep after that flow would kill
            # it. Browser launches happen before a flow's environment is applied, so the
            # worker's own environment is what it inherits here.
            self.playwright = sync_playwright().start()
        return self.playwright

    def browser_for(self, options: dict[str, Any], env: dict[str, str], timeout_s: float) -> bool:
        """Make sure a browser for ``options`` is up; return whether it was launched now."""
        cookie = str(options["cookie"])
        key = (
            options["name"],
            options.get("executable"),
            bool(options.get("headed")),
            cookie,
            options.get("endpoint"),
        )
        if self.browser is not None and self.key == key and self._connected():
            return False
        self.close_browser()
        playwright = self._start()
        if options.get("endpoint"):
            self._connect(playwright, options, key, timeout_s)
            return True
        browser_type = getattr(playwright, str(options["name"]))
        executable = resolve_executable(
            str(options["name"]),
            options.get("executable"),
            _managed_path(browser_type),
            find_system_chromium,
        )
        launch_env = {k: v for k, v in env.items() if k != COOKIE_VAR}
        launch_env[COOKIE_VAR] = cookie
        arguments = list(CHROMIUM_FLAGS) if options["name"] == "chromium" else []
        try:
            browser = browser_type.launch(
                executable_path=executable,
                headless=not options.get("headed"),
                args=arguments,
                env=launch_env,
                timeout=max(1.0, min(timeout_s, LAUNCH_TIMEOUT_S)) * 1000,
            )
        except Exception as exc:
            sweep_cookie(cookie)
            if _driver_gone(exc):
                self.reset()
            shown = executable or _managed_path(browser_type) or options["name"]
            raise BrowserUnavailable(
                f"{options['name']} ({shown}) failed to launch: {first_lines(str(exc), 300)}"
            ) from None
        self.browser = browser
        self.key = key
        self.cookie = cookie
        self.executable = executable
        self.version = str(getattr(browser, "version", ""))
        self.pids = sorted(pids_with_cookie(cookie))
        return True

    def _connect(
        self, playwright: Any, options: dict[str, Any], key: tuple[Any, ...], timeout_s: float
    ) -> None:
        """Use a browser another process serves (``--runset-browser-endpoint``)."""
        from pytest_runset.gateway.endpoint import cdp_url, check_endpoint

        endpoint = str(options["endpoint"])
        timeout = max(1.0, min(timeout_s, LAUNCH_TIMEOUT_S)) * 1000
        try:
            if check_endpoint(endpoint) == "cdp":
                # Opt-in only: a DevTools endpoint is Chromium's, with fewer guarantees.
                browser = playwright.chromium.connect_over_cdp(cdp_url(endpoint), timeout=timeout)
            else:
                browser = getattr(playwright, str(options["name"])).connect(
                    endpoint, timeout=timeout
                )
        except Exception as exc:
            if _driver_gone(exc):
                self.reset()
            # A version mismatch (HTTP 428) comes back as Playwright says it, on one line.
            raise BrowserUnavailable(
                f"cannot connect to the browser at {endpoint}: {first_lines(str(exc), 600)}"
            ) from None
        self.browser = browser
        self.key = key
        # Its processes live with the server, not here: nothing of ours to sweep.
        self.cookie = None
        self.executable = endpoint
        self.version = str(getattr(browser, "version", ""))
        self.pids = []

    def _connected(self) -> bool:
        try:
            return bool(self.browser.is_connected())
        except Exception:
            return False

    def close_browser(self) -> None:
        browser, self.browser = self.browser, None
        cookie, self.cookie = self.cookie, None
        self.key = None
        if browser is not None:
            with contextlib.suppress(Exception):
                browser.close()
        if cookie is not None:
            # Whatever did not close goes (a crashed browser's helpers, a hung one).
            sweep_cookie(cookie)

    def reset(self) -> None:
        """Forget a broken driver (it died with its connection); the next flow starts one."""
        self.close_browser()
        playwright, self.playwright = self.playwright, None
        if playwright is not None:
            with contextlib.suppress(Exception):
                playwright.stop()

    def close(self) -> dict[str, Any]:
        self.reset()
        return {}


HOST = Host()


def _managed_path(browser_type: Any) -> str | None:
    try:
        return str(browser_type.executable_path)
    except Exception:
        return None


def _driver_gone(exc: BaseException) -> bool:
    text = str(exc)
    return "Connection closed" in text or ("driver" in text.lower() and "closed" in text)


def kill_flow(spec: dict[str, Any]) -> int:
    """Kill what a flow runs on: its browser's processes and its own (any thread)."""
    killed = 0
    options = spec.get("browser")
    if options:
        killed += sweep_cookie(str(options["cookie"]))
    killed += sweep_cookie(str(spec["flow_id"]))
    return killed


def shutdown() -> None:
    """The worker stops: close the browser on the flow thread, or kill it if that is busy."""
    from pytest_runset.gateway.runners.inproc import shutdown as run_on_flow_thread

    run_on_flow_thread(HOST.close, 5.0)
    cookie = HOST.cookie
    if cookie is not None:
        sweep_cookie(cookie)


class Session:
    """One flow's browser context: its page, tracing, console log, screenshots and video."""

    def __init__(self, spec: dict[str, Any], control: Any) -> None:
        self.spec = spec
        self.options: dict[str, Any] = dict(spec["browser"])
        self.control = control
        self.flow_dir = str(spec["flow_dir"])
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
        options: dict[str, Any] = {}
        base_url = self.spec.get("base_url")
        if base_url:
            options["base_url"] = base_url
        viewport = self.options.get("viewport")
        if viewport:
            options["viewport"] = {"width": int(viewport[0]), "height": int(viewport[1])}
        if self._video:
            options["record_video_dir"] = os.path.join(self.flow_dir, VIDEO_DIR)
        return options

    def _new_context(self) -> None:
        browser = HOST.browser
        self.context = browser.new_context(**self._context_options())
        remaining_ms = float(max(1, round(self.control.remaining() * 1000)))
        self.context.set_default_timeout(min(ACTION_TIMEOUT_S * 1000, remaining_ms))
        self.context.set_default_navigation_timeout(min(ACTION_TIMEOUT_S * 1000, remaining_ms))
        self._console = open(  # noqa: SIM115 - closed in finish()
            os.path.join(self.flow_dir, "console.log"), "a", encoding="utf-8", buffering=1
        )
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
                self._console.write(line.rstrip("\n") + "\n")

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
            return
        pages = self._pages()
        screenshot = self.options.get("screenshot", "only-on-failure")
        if screenshot != "off" and (failed or screenshot == "on"):
            stem = "failure" if failed else "final"
            for number, page in enumerate(pages, 1):
                name = f"{stem}.png" if number == 1 else f"{stem}-{number}.png"
                shot = functools.partial(
                    _screenshot_with_retry,
                    page,
                    path=os.path.join(self.flow_dir, name),
                    timeout=TEARDOWN_TIMEOUT_MS,
                )
                self._quietly(f"{stem} screenshot", shot)
        if self._tracing:
            trace = self.options.get("trace", "off")
            if trace == "on" or (trace == "retain-on-failure" and failed):
                path = os.path.join(self.flow_dir, "trace.zip")
                self._quietly("trace", lambda: context.tracing.stop(path=path))
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
        self._close_console()
        self.context = None

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
                self._quietly(
                    "video", functools.partial(video.save_as, os.path.join(self.flow_dir, name))
                )
            with contextlib.suppress(Exception):
                video.delete()
        shutil.rmtree(os.path.join(self.flow_dir, VIDEO_DIR), ignore_errors=True)

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


def open_session(spec: dict[str, Any], control: Any) -> tuple[Session, dict[str, Any] | None]:
    """A flow's browser session, opened. When no browser can run, the session is already
    finished and the second value is the flow's ``error`` result."""
    session = Session(spec, control)
    try:
        session.open()
    except BrowserUnavailable as exc:
        session.finish(failed=True)
        return session, {"status": "error", "message": str(exc)}
    return session, None


def _screenshot_with_retry(page: Any, *, path: str, timeout: float) -> None:
    """Chromium sometimes cannot capture a page that is still settling (an error page right
    after a refused connection, say): one more try a moment later usually works."""
    try:
        page.screenshot(path=path, timeout=timeout)
    except Exception:
        time.sleep(0.3)
        page.screenshot(path=path, timeout=timeout)

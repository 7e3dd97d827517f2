"""The worker's browser: finding or launching it, keeping it warm, killing it.

This module owns everything that outlives one flow: where the browser executable comes from
(:func:`resolve_executable`, :func:`find_system_chromium`), the worker's Playwright driver and
warm browser (:class:`Host`, one per worker: :data:`HOST`), and killing a flow's browser
processes (:func:`kill_flow`) or all of them when the worker stops (:func:`shutdown`). One
flow's context, page and artifacts are :mod:`.browser_session`'s.

Everything here except :func:`kill_flow` and :func:`shutdown` runs on the worker's flow thread
(see :mod:`.inproc`), because Playwright's sync API belongs to the thread that started it.
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
import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_runset.gateway.proctree import COOKIE_VAR, pids_with_cookie, sweep_cookie
from pytest_runset.gateway.protocol import AttemptSpec

if TYPE_CHECKING:
    from pytest_runset.gateway.runners.inproc import BodyResult

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
    "pip install playwright (pytest-runset's browser extra; then a browser: "
    "python -m playwright install chromium, or apt-get install chromium)"
)
# How long a browser may take to launch or connect (bounded by the flow's remaining time).
LAUNCH_TIMEOUT_S = 60.0


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
            # worker's own environment is what it inherits here. Nor may it start in a callable
            # flow's cgroup, which is killed when that flow ends.
            from pytest_runset.gateway import containment

            keeper = containment.CURRENT
            with keeper.outside_flow() if keeper is not None else contextlib.nullcontext():
                self.playwright = sync_playwright().start()
        return self.playwright

    def browser_for(self, options: dict[str, Any], env: dict[str, str], timeout_s: float) -> bool:
        """Make sure a browser for ``options`` is up; return whether it was launched now."""
        cookie = str(options["cookie"])
        launch = dict(options.get("launch") or {})
        key = (
            options["name"],
            options.get("executable"),
            bool(options.get("headed")),
            cookie,
            options.get("endpoint"),
            # Flows whose launch options differ (channel, slow_mo, args) get a browser of their
            # own: the warm one is closed and another launched.
            repr(sorted(launch.items())),
        )
        if self.browser is not None and self.key == key and self._connected():
            return False
        self.close_browser()
        playwright = self._start()
        if options.get("endpoint"):
            self._connect(playwright, options, key, timeout_s)
            return True
        browser_type = getattr(playwright, str(options["name"]))
        channel = launch.get("channel")
        # A channel names the browser itself (Chrome, Edge): Playwright finds it.
        executable = (
            options.get("executable")
            if channel
            else resolve_executable(
                str(options["name"]),
                options.get("executable"),
                _managed_path(browser_type),
                find_system_chromium,
            )
        )
        launch_env = {k: v for k, v in env.items() if k != COOKIE_VAR}
        launch_env[COOKIE_VAR] = cookie
        from pytest_runset.gateway import containment

        # Listed for the run's watchdog: a browser outlives flows, and may outlive its worker.
        containment.note_cookie(cookie)
        arguments = list(CHROMIUM_FLAGS) if options["name"] == "chromium" else []
        arguments += [arg for arg in launch.get("args") or () if arg not in arguments]
        extra = {"channel": channel} if channel else {}
        if launch.get("slow_mo"):
            extra["slow_mo"] = float(launch["slow_mo"])
        try:
            browser = browser_type.launch(
                executable_path=executable,
                headless=not options.get("headed"),
                args=arguments,
                env=launch_env,
                timeout=max(1.0, min(timeout_s, LAUNCH_TIMEOUT_S)) * 1000,
                **extra,
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

    def close(self) -> BodyResult:
        """Run on the flow thread when the worker stops (nothing to report)."""
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


def kill_flow(spec: AttemptSpec) -> int:
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

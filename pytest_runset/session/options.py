"""pytest-runset's command-line options and ini settings, and the parsing of their values.

``-n`` is registered here only when pytest-xdist is absent: with xdist installed it is xdist's
option and flows cooperate with it (docs/xdist.md).
"""

from __future__ import annotations

import importlib.metadata
import math
import os

import pytest

from pytest_runset.model.durations import parse_duration


def xdist_available(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether pytest-xdist will register ``-n`` in this session (then it is xdist's)."""
    if pluginmanager.has_plugin("xdist.plugin") or pluginmanager.has_plugin("xdist"):
        return True
    if pluginmanager.is_blocked("xdist") or pluginmanager.is_blocked("xdist.plugin"):
        return False
    try:
        importlib.metadata.distribution("pytest-xdist")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def register(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Every pytest-runset option and ini setting, in the group of ``pytest --help``."""
    group = parser.getgroup("runset", "parallel flow runs (pytest-runset)")
    group.addoption(
        "--runset",
        action="append",
        default=[],
        metavar="PATH",
        help="collect the flows of this run-set file (repeatable). Without positional paths, "
        "only these flows are collected.",
    )
    own_n = not xdist_available(pluginmanager)
    if own_n:
        # Lower-case short options are reserved for pytest's own; pytest-xdist registers -n
        # the same way, which is why we never do it when xdist is present.
        group._addoption(
            "-n",
            "--numprocesses",
            dest="numprocesses",
            default=None,
            metavar="N|auto",
            help="number of flow workers (pytest-xdist owns -n when it is installed)",
        )
    group.addoption(
        "--runset-workers",
        default=None,
        metavar="N|auto",
        help="number of flow workers; wins over -n. Default: [runset] concurrency, else 1.",
    )
    group.addoption(
        "--runset-timeout",
        default=None,
        metavar="SECONDS",
        help="override every flow's timeout (seconds, or e.g. 90s, 15m).",
    )
    group.addoption(
        "--runset-output",
        default=None,
        metavar="DIR",
        help="root of run directories (default: [runset] output, else runset-results beside "
        "the run-set file).",
    )
    group.addoption(
        "--runset-html",
        default=None,
        metavar="PATH",
        help="also write the self-contained HTML report to PATH (several run-sets: one page "
        "each, <stem>-<runset name>.html). Every run directory has a report.html anyway.",
    )
    group.addoption(
        "--runset-run-id",
        default=None,
        metavar="ID",
        help="name of this run (default: UTC timestamp plus a short random suffix).",
    )
    group.addoption(
        "--runset-resume",
        default=None,
        metavar="RUN_ID|last",
        help="continue an interrupted or failed run: flows that already passed in it are not "
        "run again ('last': the run whose journal changed last).",
    )
    group.addoption(
        "--runset-global-timeout",
        default=None,
        metavar="SECONDS",
        help="bound on the whole run: at expiry running flows are killed (timeout) and "
        "unstarted ones are not_run; the report is still written.",
    )
    group.addoption(
        "--runset-containment",
        default=None,
        choices=("auto", "cgroup", "process-group"),
        help="how each flow's processes are kept together and killed: a cgroup per flow, "
        "or its process group plus a subreaper (default: [runset] containment, else auto: "
        "cgroup where it works).",
    )
    group.addoption(
        "--runset-fail-on-flaky",
        action="store_true",
        default=False,
        help="a flow that passes only on a retry counts as failed.",
    )
    group.addoption(
        "--runset-retries",
        default=None,
        type=int,
        metavar="N",
        help="retry failed, timed-out and errored flows up to N times.",
    )
    group.addoption(
        "--runset-base-url",
        default=None,
        metavar="URL",
        help="base URL given to flows ({base_url}, RUNSET_BASE_URL) and browser pages.",
    )
    group.addoption(
        "--runset-shard",
        default=None,
        metavar="K/N",
        help="run only shard K (1-based) of N: deterministic, balanced by the duration "
        "history when there is one (else round-robin in file order).",
    )
    _add_browser_options(group)
    _add_scaleout_options(group)
    parser.addini(
        "runset_backstop_margin",
        "seconds past a flow's timeout + kill_grace before an unresponsive worker is killed",
        default="10",
    )
    parser.addini(
        "runset_live_status",
        "show a live 'N running / M queued' line while flows run, when the terminal is a TTY "
        "(default true; never on a pipe or in a CI log)",
        type="bool",
        default=True,
    )
    parser.addini(
        "runset_max_restarts",
        "how many times crashed or killed workers may be replaced (default 4 x workers)",
        default=None,
    )


def _add_browser_options(group: pytest.OptionGroup) -> None:
    group.addoption(
        "--runset-browser",
        default="chromium",
        choices=("chromium", "firefox", "webkit"),
        help="browser of browser flows (default: chromium).",
    )
    group.addoption(
        "--runset-browser-executable",
        default=None,
        metavar="PATH",
        help="browser executable to launch instead of Playwright's own or a system Chromium.",
    )
    group.addoption(
        "--runset-headed",
        action="store_true",
        default=False,
        help="show browser windows (default: headless).",
    )
    group.addoption(
        "--runset-trace",
        default="retain-on-failure",
        choices=("on", "off", "retain-on-failure"),
        help="Playwright trace.zip per browser flow (default: retain-on-failure).",
    )
    group.addoption(
        "--runset-screenshot",
        default="only-on-failure",
        choices=("on", "off", "only-on-failure"),
        help="screenshot at the end of browser flows (default: only-on-failure).",
    )
    group.addoption(
        "--runset-video",
        default="off",
        choices=("on", "off", "retain-on-failure"),
        help="video of browser flows (default: off).",
    )


def _add_scaleout_options(group: pytest.OptionGroup) -> None:
    group.addoption(
        "--runset-tx",
        action="append",
        default=[],
        metavar="SPEC",
        help="run flows on this execnet gateway (repeatable; '4*popen', "
        "'2*ssh=HOST//python=/venv/bin/python'); the worker count is the number of gateways. "
        "See docs/scaling-out.md.",
    )
    group.addoption(
        "--runset-px",
        action="append",
        default=[],
        metavar="SPEC",
        help="a proxy gateway ('ssh=jump//id=jump') that --runset-tx specs reach through "
        "via=ID or installvia=ID (repeatable).",
    )
    group.addoption(
        "--runset-remote-root",
        default=None,
        metavar="PATH",
        help="where the run-set's directory is on remote gateway hosts (default: the same "
        "path as here, a shared checkout).",
    )
    group.addoption(
        "--runset-coordinator",
        default=None,
        metavar="URL",
        help="redis:// or rediss:// URL of a coordinator shared by several sessions: personas, "
        "pools, tag limits and exclusive flows hold across all of them (default: "
        "$RUNSET_COORDINATOR, else [runset] coordinator; needs pytest-runset[redis]).",
    )
    group.addoption(
        "--runset-queue",
        default=None,
        metavar="NAME",
        help="take flows from the coordinator's shared queue NAME (e.g. the CI pipeline id): "
        "every session of the queue runs the flows together, each flow once.",
    )
    group.addoption(
        "--runset-browser-endpoint",
        default=None,
        metavar="WS_URL",
        help="browser flows connect to this Playwright server instead of launching a browser "
        "('cdp+http://...' for a Chrome DevTools endpoint).",
    )


def workers_value(raw: str, option: str) -> int:
    if raw == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        value = int(raw)
    except ValueError:
        raise pytest.UsageError(f"{option} {raw!r}: expected a positive number or 'auto'") from None
    if value < 1:
        raise pytest.UsageError(f"{option} {raw!r}: must be at least 1")
    return value


def timeout_value(raw: str, option: str = "--runset-timeout") -> float:
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{option} {raw!r}: {exc}") from None
    if value <= 0 or not math.isfinite(value):
        raise pytest.UsageError(f"{option} {raw!r}: must be greater than 0")
    return value

"""The words pytest prints for a flow's result: ``TIMEOUT`` and ``FLAKY`` where they are true.

pytest knows only passed, failed and skipped, so under ``-v`` a flow killed at its timeout would
read ``FAILED`` and a flow that passed only on a retry ``PASSED``. :func:`flow_teststatus` is the
plugin's ``pytest_report_teststatus`` for such flows: its category stays pytest's own (a timeout
is still counted as failed, a flaky pass as passed, in the summary and the exit code), only the
word says what happened. The letters (``F``, ``.``) stay as documented.

A flow's result reaches the hook two ways: the run loop tells it here while it replays the flow
(:func:`telling`), and inside pytest-xdist the call report itself carries ``runset_status`` and
``runset_flaky`` (serialized with it to the controller).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

# What the run loop is replaying right now, by node id.
_TELLING = pytest.StashKey[dict[str, "Verdict"]]()

# (category, letter, (word, markup)): what pytest_report_teststatus returns.
TestStatus = tuple[str, str, tuple[str, Mapping[str, bool]]]


@dataclass(frozen=True)
class Verdict:
    """A flow's status as in ``report.json``, and whether it passed only on a retry."""

    status: str
    flaky: bool


@contextlib.contextmanager
def telling(config: pytest.Config, nodeid: str, verdict: Verdict) -> Iterator[None]:
    """While a flow's reports are replayed, the hook knows its verdict."""
    telling = config.stash.setdefault(_TELLING, {})
    telling[nodeid] = verdict
    try:
        yield
    finally:
        telling.pop(nodeid, None)


def flow_teststatus(report: pytest.TestReport, config: pytest.Config) -> TestStatus | None:
    """``TIMEOUT`` or ``FLAKY`` for a flow's call report; None (pytest's own) otherwise."""
    if report.when != "call":
        return None
    verdict = _verdict(report, config)
    if verdict is None:
        return None
    if verdict.status == "timeout" and report.failed:
        return "failed", "F", ("TIMEOUT", {"red": True})
    if verdict.flaky and report.passed and not hasattr(report, "wasxfail"):
        return "passed", ".", ("FLAKY", {"yellow": True})
    if verdict.flaky and report.failed:
        # --runset-fail-on-flaky: failed because it needed a retry.
        return "failed", "F", ("FLAKY", {"red": True})
    return None


def _verdict(report: pytest.TestReport, config: pytest.Config) -> Verdict | None:
    status = getattr(report, "runset_status", None)
    if isinstance(status, str):
        return Verdict(status, bool(getattr(report, "runset_flaky", False)))
    return config.stash.get(_TELLING, {}).get(report.nodeid)

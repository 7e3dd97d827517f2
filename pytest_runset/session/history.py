"""How long each flow took in earlier runs, kept in pytest's cache (``.pytest_cache``).

Registered as a plugin by ``plugin.py``: it learns from each run's report.

The history orders dispatch (longest first) and balances shards. Each flow keeps its last
:data:`KEEP` durations under its node id (run-set path relative to the rootdir + slug); its
estimate is their median, so one slow or fast outlier does not move it. Only flows that ran to
completion teach the history (:data:`COMPLETED`): a timeout's duration is the timeout, an error
or an interruption says nothing about how long the flow takes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_runset.results.formats import RunReport

CACHE_KEY = "runset/durations"
KEEP = 5
COMPLETED = frozenset({"passed", "failed", "xfailed", "xpassed"})


def estimate(samples: Iterable[float]) -> float:
    """The duration to expect from a flow's recorded ``samples`` (their median)."""
    return float(statistics.median(samples))


def updated(
    history: Mapping[str, list[float]], entries: Iterable[Mapping[str, Any]]
) -> dict[str, list[float]]:
    """``history`` with the durations of the report ``entries`` that ran to completion."""
    result = {key: list(samples) for key, samples in history.items()}
    for entry in entries:
        if entry.get("status") not in COMPLETED:
            continue
        duration = entry.get("duration_s")
        key = entry.get("nodeid")
        if not isinstance(key, str) or not isinstance(duration, int | float):
            continue
        if _is_duration(duration):
            result[key] = [*result.get(key, []), round(float(duration), 3)][-KEEP:]
    return result


def clean(raw: object) -> dict[str, list[float]]:
    """The usable part of a cached history: anything malformed (a hand-edited or foreign
    cache file) is dropped, never fatal."""
    if not isinstance(raw, dict):
        return {}
    history: dict[str, list[float]] = {}
    for key, samples in raw.items():
        if isinstance(key, str) and isinstance(samples, list):
            kept = [float(value) for value in samples if _is_duration(value)][-KEEP:]
            if kept:
                history[key] = kept
    return history


def _is_duration(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def load(config: pytest.Config) -> dict[str, list[float]]:
    """The recorded history (empty without pytest's cache, e.g. ``-p no:cacheprovider``)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return {}
    return clean(cache.get(CACHE_KEY, {}))


def durations(config: pytest.Config, keys: Iterable[str]) -> dict[str, float]:
    """Expected duration of each of ``keys`` that has a history."""
    history = load(config)
    return {key: estimate(history[key]) for key in keys if key in history}


def record(config: pytest.Config, entries: Iterable[Mapping[str, Any]]) -> None:
    """Add a run's report entries to the history."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return
    cache.set(CACHE_KEY, updated(load(config), entries))


@pytest.hookimpl(trylast=True)
def pytest_runset_report(config: pytest.Config, report: RunReport) -> None:
    """Teach the history from the run's report; a sharded run leaves it alone (shards.py)."""
    if config.getoption("runset_shard", None) is None:
        record(config, report["flows"])


def failed_last_time(config: pytest.Config, keys: list[str]) -> set[str]:
    """With ``--ff``: which of ``keys`` failed in the last run (pytest's own cache)."""
    cache = getattr(config, "cache", None)
    if cache is None or not config.getoption("failedfirst", False):
        return set()
    lastfailed = cache.get("cache/lastfailed", {})
    return {key for key in keys if key in lastfailed}

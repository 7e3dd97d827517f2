"""``groups`` of a report: its flows grouped by matrix axis and by tag, with statistics.

For every matrix axis (in axis order) and then for tags, per value: how many flows, how many
ended with each status, the pass rate, and for every numeric metric the mean, sample standard
deviation, min, median, max and a 95% confidence interval of the mean (Student's t, so that it
is honest for the handful of seeds an experiment usually has). Flows without the metric, or with
a label (a string) or ``null`` in its place, are counted in ``n_missing``.

Pure: report entries in, plain data out, the same numbers for the same flows in the same order
(a resumed run, shards merged and one clean run agree to the last bit). Student's t quantile is
computed here from the regularized incomplete beta function: no scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pytest_runset.results.formats import (
    Grouping,
    GroupStats,
    MatrixValue,
    MetricStats,
)
from pytest_runset.results.numbers import num
from pytest_runset.results.statuses import STATUSES

__all__ = [
    "DECIDED_STATUSES",
    "compute_groups",
    "group_stats",
    "metric_names",
    "metric_stats",
    "t_quantile",
]

# The statuses that say whether a flow did its job; the pass rate is passed over these
# (skipped, xfailed, xpassed, interrupted and not_run flows neither pass nor fail it).
DECIDED_STATUSES = ("passed", "failed", "error", "timeout")
_EPS = 3e-16
_TINY = 1e-300


def _value_key(value: MatrixValue) -> tuple[bool, bool, MatrixValue]:
    """``true``, ``1`` and ``"1"`` are three values (as in model/matrix.py)."""
    return (isinstance(value, bool), isinstance(value, str), value)


def metric_names(flows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every metric that is a number in some flow, in order of first appearance."""
    names: dict[str, None] = {}
    for flow in flows:
        metrics = flow.get("metrics")
        if isinstance(metrics, Mapping):
            for name, value in metrics.items():
                if isinstance(name, str) and num(value) is not None:
                    names.setdefault(name)
    return list(names)


def metric_stats(values: list[float], n_missing: int) -> MetricStats:
    """Statistics of one metric's values (in flow order)."""
    n = len(values)
    stats: MetricStats = {
        "n": n,
        "n_missing": n_missing,
        "mean": None,
        "stdev": None,
        "min": None,
        "median": None,
        "max": None,
        "ci95": None,
    }
    if n == 0:
        return stats
    mean = statistics.fmean(values)
    stats["mean"] = mean
    stats["min"], stats["median"], stats["max"] = (
        min(values),
        statistics.median(values),
        max(values),
    )
    if n >= 2:
        stdev = statistics.stdev(values)
        half = t_quantile(0.975, n - 1) * stdev / math.sqrt(n)
        stats["stdev"] = stdev
        stats["ci95"] = [mean - half, mean + half]
    return stats


def group_stats(
    value: MatrixValue, flows: list[Mapping[str, Any]], metrics: list[str]
) -> GroupStats:
    """The statistics of ``flows`` (one group) for the report's ``metrics``."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for flow in flows:
        status = flow.get("status")
        if isinstance(status, str) and status in counts:
            counts[status] += 1
    decided = sum(counts[status] for status in DECIDED_STATUSES)
    per_metric: dict[str, MetricStats] = {}
    for name in metrics:
        values = []
        for flow in flows:
            found = flow.get("metrics")
            number = num(found.get(name)) if isinstance(found, Mapping) else None
            if number is not None:
                values.append(number)
        per_metric[name] = metric_stats(values, len(flows) - len(values))
    return {
        "value": value,
        "n": len(flows),
        "counts": counts,
        "pass_rate": counts["passed"] / decided if decided else None,
        "metrics": per_metric,
    }


def compute_groups(flows: Iterable[Mapping[str, Any]]) -> list[Grouping]:
    """The report's ``groups``: one per matrix axis, then one for tags (if any flow has one).

    Entries are read as a report of any version may have them: a ``matrix`` that is not a
    table or a tag that is not a string is left out, never an error.
    """
    entries = [flow for flow in flows if isinstance(flow, Mapping)]
    metrics = metric_names(entries)
    by_axis: dict[str, dict[tuple[bool, bool, MatrixValue], tuple[MatrixValue, list[Any]]]] = {}
    by_tag: dict[str, list[Mapping[str, Any]]] = {}
    for flow in entries:
        matrix = flow.get("matrix")
        if isinstance(matrix, Mapping):
            for axis, value in matrix.items():
                if isinstance(axis, str) and isinstance(value, str | int | float):
                    groups = by_axis.setdefault(axis, {})
                    groups.setdefault(_value_key(value), (value, []))[1].append(flow)
        tags = flow.get("tags")
        if isinstance(tags, list):
            for tag in dict.fromkeys(tag for tag in tags if isinstance(tag, str)):
                by_tag.setdefault(tag, []).append(flow)
    groupings: list[Grouping] = [
        {
            "by": axis,
            "kind": "matrix",
            "groups": [group_stats(value, members, metrics) for value, members in groups.values()],
        }
        for axis, groups in by_axis.items()
    ]
    if by_tag:
        groupings.append(
            {
                "by": "tag",
                "kind": "tag",
                "groups": [group_stats(tag, members, metrics) for tag, members in by_tag.items()],
            }
        )
    return groupings


@lru_cache(maxsize=1024)
def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile: ``P(T <= t) = probability`` with ``df`` degrees of freedom
    (any real ``df > 0``, as Welch's approximation gives). ``t_quantile(0.975, 1)`` is
    12.7062..., ``t_quantile(0.975, 29)`` 2.04523..., and large ``df`` tend to 1.95996...
    """
    if not 0.5 <= probability < 1 or not df > 0:
        raise ValueError("t_quantile needs 0.5 <= probability < 1 and df > 0")
    if probability == 0.5:
        return 0.0
    tail = 2 * (1 - probability)  # two-sided: P(|T| > t)
    low, high = 0.0, 1.0
    while _two_sided_tail(high, df) > tail:
        high *= 2
        if high > 1e12:
            return math.inf
    # Bisection: the tail falls monotonically in t; 200 halvings reach float precision.
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if _two_sided_tail(middle, df) > tail:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _two_sided_tail(t: float, df: float) -> float:
    """P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2)."""
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast only below the mean; above it, use I_x(a,b) = 1 - I_1-x(b,a).
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > _TINY else _TINY)
            c = 1 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= d * c
        if abs(d * c - 1) < _EPS:
            break
    return result

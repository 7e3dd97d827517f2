"""Two runs side by side: per group, pass rates and metric means, their differences, and
whether each difference's 95% interval excludes zero.

- Pass rates (passed over passed, failed, error and timeout): the difference of two
  proportions with Newcombe's hybrid score interval (from the two Wilson intervals). Unlike
  the textbook Wald interval it stays honest at 0% and 100% and for a handful of flows: one
  flow that passed, then one that failed, is no evidence of anything.
- Metric means: Welch's interval (Student's t with the Welch-Satterthwaite degrees of
  freedom), which does not assume the two runs have the same spread.

A regression is a group whose pass rate fell and whose interval lies wholly below zero.
Metrics are never regressions on their own: whether more is better is the user's to say.

Pure: reports (dicts) in, dataclasses out; groups are recomputed from each report's flows, so
reports of older releases, merged reports and runs without matrices compare alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_runset.results.formats import GroupStats, MatrixValue, MetricStats
from pytest_runset.results.groups import (
    DECIDED_STATUSES,
    compute_groups,
    group_stats,
    metric_names,
    t_quantile,
)

__all__ = [
    "ALL",
    "Comparison",
    "GroupComparison",
    "Interval",
    "MetricDifference",
    "RateDifference",
    "compare_reports",
    "proportion_difference",
    "welch_difference",
]

# The group of every flow of a run, compared first.
ALL = "all"
_Z = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class RateDifference:
    """``new - base`` of two pass rates (``k`` passed of ``n`` decided flows each)."""

    base_k: int
    base_n: int
    new_k: int
    new_n: int
    difference: float
    interval: Interval

    @property
    def significant(self) -> bool:
        return self.interval.excludes_zero


@dataclass(frozen=True)
class MetricDifference:
    """``new - base`` of a metric's means; no interval when a side has fewer than 2 values."""

    name: str
    base: MetricStats | None
    new: MetricStats | None
    difference: float | None
    interval: Interval | None

    @property
    def significant(self) -> bool:
        return self.interval is not None and self.interval.excludes_zero


@dataclass(frozen=True)
class GroupComparison:
    """One group (a value of an axis, a tag, or every flow) in both runs."""

    by: str
    kind: str
    value: MatrixValue
    base: GroupStats | None
    new: GroupStats | None
    pass_rate: RateDifference | None
    metrics: list[MetricDifference] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        """The pass rate fell, and its 95% interval lies wholly below zero."""
        return self.pass_rate is not None and self.pass_rate.interval.high < 0


@dataclass(frozen=True)
class Comparison:
    groups: list[GroupComparison]
    # The groupings of either report (axis names and "tag"), for messages.
    available: list[str]

    @property
    def regressions(self) -> list[GroupComparison]:
        return [group for group in self.groups if group.regression]


def _wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    denominator = 1 + _Z * _Z / n
    center = (p + _Z * _Z / (2 * n)) / denominator
    half = _Z * math.sqrt(p * (1 - p) / n + _Z * _Z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def proportion_difference(base_k: int, base_n: int, new_k: int, new_n: int) -> RateDifference:
    """``new - base`` of two proportions with Newcombe's hybrid score interval (his method
    10); both ``n`` must be positive."""
    if base_n <= 0 or new_n <= 0:
        raise ValueError("proportions need at least one flow on each side")
    p1, p2 = base_k / base_n, new_k / new_n
    low1, high1 = _wilson(base_k, base_n)
    low2, high2 = _wilson(new_k, new_n)
    difference = p2 - p1
    low = difference - math.sqrt((p2 - low2) ** 2 + (high1 - p1) ** 2)
    high = difference + math.sqrt((high2 - p2) ** 2 + (p1 - low1) ** 2)
    return RateDifference(base_k, base_n, new_k, new_n, difference, Interval(low, high))


def welch_difference(
    base: tuple[float, float, int], new: tuple[float, float, int]
) -> tuple[float, Interval]:
    """``new - base`` of two means, each given as ``(mean, sample stdev, n)`` with n >= 2,
    and Welch's 95% interval. Two spreads of zero give the difference itself as interval."""
    (m1, s1, n1), (m2, s2, n2) = base, new
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's interval needs at least two values on each side")
    v1, v2 = s1 * s1 / n1, s2 * s2 / n2
    difference = m2 - m1
    se = math.sqrt(v1 + v2)
    if se == 0:
        return difference, Interval(difference, difference)
    df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
    half = t_quantile(0.975, df) * se
    return difference, Interval(difference - half, difference + half)


def _decided(stats: GroupStats) -> tuple[int, int]:
    counts = stats["counts"]
    return counts.get("passed", 0), sum(counts.get(status, 0) for status in DECIDED_STATUSES)


def _metric(name: str, base: GroupStats | None, new: GroupStats | None) -> MetricDifference:
    a = base["metrics"].get(name) if base else None
    b = new["metrics"].get(name) if new else None
    difference = interval = None
    if a and b and a["mean"] is not None and b["mean"] is not None:
        difference = b["mean"] - a["mean"]
        if a["stdev"] is not None and b["stdev"] is not None:
            difference, interval = welch_difference(
                (a["mean"], a["stdev"], a["n"]), (b["mean"], b["stdev"], b["n"])
            )
    return MetricDifference(name, a, b, difference, interval)


def _compare(
    by: str,
    kind: str,
    value: MatrixValue,
    base: GroupStats | None,
    new: GroupStats | None,
    metrics: list[str],
) -> GroupComparison:
    rate = None
    if base and new:
        (k1, n1), (k2, n2) = _decided(base), _decided(new)
        if n1 and n2:
            rate = proportion_difference(k1, n1, k2, n2)
    return GroupComparison(
        by, kind, value, base, new, rate, [_metric(name, base, new) for name in metrics]
    )


def _key(value: MatrixValue) -> tuple[bool, bool, MatrixValue]:
    return (isinstance(value, bool), isinstance(value, str), value)


def compare_reports(
    base: Mapping[str, Any], new: Mapping[str, Any], group_by: str | None = None
) -> Comparison:
    """Every group of either report (only those of ``group_by``, an axis or ``"tag"``, when
    given; else every flow first, then each grouping), in the order the reports have them."""
    base_flows = [f for f in base.get("flows") or [] if isinstance(f, Mapping)]
    new_flows = [f for f in new.get("flows") or [] if isinstance(f, Mapping)]
    metrics = list(dict.fromkeys([*metric_names(base_flows), *metric_names(new_flows)]))
    groupings: dict[tuple[str, str], dict[Any, list[GroupStats | None]]] = {}
    for side, flows in enumerate((base_flows, new_flows)):
        for grouping in compute_groups(flows):
            slot = groupings.setdefault((grouping["by"], grouping["kind"]), {})
            for stats in grouping["groups"]:
                slot.setdefault(_key(stats["value"]), [None, None])[side] = stats
    available = list(dict.fromkeys(by for by, _ in groupings))
    compared: list[GroupComparison] = []
    if group_by is None:
        compared.append(
            _compare(
                ALL,
                ALL,
                "every flow",
                group_stats(ALL, base_flows, metrics),
                group_stats(ALL, new_flows, metrics),
                metrics,
            )
        )
    for (by, kind), slot in groupings.items():
        if group_by is not None and by != group_by:
            continue
        for pair in slot.values():
            present = pair[0] or pair[1]
            assert present is not None  # a slot is made for a group of one side at least
            compared.append(_compare(by, kind, present["value"], pair[0], pair[1], metrics))
    return Comparison(compared, available)

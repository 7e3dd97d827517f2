"""Grouped results: statistics per matrix axis and tag, the comparison of two runs, the HTML
part and merged reports. See DESIGN.md, "Experiments: matrices and grouped metrics"."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.results.compare import (
    compare_reports,
    proportion_difference,
    welch_difference,
)
from pytest_runset.results.groups import compute_groups, t_quantile
from pytest_runset.results.html_groups import groups_section
from pytest_runset.results.merge import Shard, merge_reports

# Student's t, 97.5% quantile, from the printed tables.
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 5: 2.5706, 10: 2.2281, 29: 2.0452, 120: 1.9799}


def flow(
    index: int,
    status: str = "passed",
    *,
    matrix: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"flow {index}",
        "slug": f"flow-{index}",
        "index": index,
        "status": status,
        "tags": tags or [],
        "metrics": metrics or {},
        "duration_s": 0.1,
        "started_s": 0.0,
        "artifacts": [],
    }
    if matrix is not None:
        entry["matrix"] = matrix
    return entry


def grouping(groups: list[dict[str, Any]], by: str) -> dict[Any, dict[str, Any]]:
    (found,) = [g for g in groups if g["by"] == by]
    return {group["value"]: group for group in found["groups"]}


@pytest.mark.parametrize(("df", "expected"), sorted(T975.items()))
def test_t_quantile_matches_the_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-5)


def test_t_quantile_tends_to_the_normal_and_takes_real_df() -> None:
    assert t_quantile(0.975, 1e7) == pytest.approx(statistics.NormalDist().inv_cdf(0.975), 1e-6)
    assert T975[2] > t_quantile(0.975, 2.5) > T975[3]
    assert t_quantile(0.95, 10) == pytest.approx(1.8125, abs=5e-5)


@pytest.mark.parametrize("n", [1, 2, 30])
def test_group_statistics_agree_with_the_statistics_module(n: int) -> None:
    """n flows with the metric per variant, plus flows without it, a label and a null."""
    rng = random.Random(n)
    flows = []
    scores: dict[str, list[float]] = {"a": [], "b": []}
    for variant in ("a", "b"):
        for seed in range(n):
            score = rng.gauss(10 if variant == "a" else 12, 2)
            scores[variant].append(score)
            status = "failed" if seed % 3 == 2 else "passed"
            metrics = {"score": score, "model": "gpt-x", "ok": True, "steps": seed}
            flows.append(
                flow(len(flows), status, matrix={"variant": variant, "seed": seed}, metrics=metrics)
            )
        flows.append(flow(len(flows), matrix={"variant": variant, "seed": -1}))
        flows.append(
            flow(
                len(flows),
                "error",
                matrix={"variant": variant, "seed": -2},
                metrics={"score": "n/a"},
            )
        )
        flows.append(
            flow(
                len(flows),
                "skipped",
                matrix={"variant": variant, "seed": -3},
                metrics={"score": None},
            )
        )
    groups = compute_groups(flows)
    assert [g["by"] for g in groups] == ["variant", "seed"]
    by_variant = grouping(groups, "variant")
    assert list(by_variant) == ["a", "b"]
    for variant, values in scores.items():
        group = by_variant[variant]
        assert group["n"] == n + 3
        failed = sum(1 for seed in range(n) if seed % 3 == 2)
        assert group["counts"]["failed"] == failed
        assert group["counts"]["error"] == group["counts"]["skipped"] == 1
        assert group["counts"]["passed"] == n - failed + 1
        # Skipped flows are not decided: passed / (passed + failed + error + timeout).
        assert group["pass_rate"] == pytest.approx((n - failed + 1) / (n + 2))
        # Labels and booleans are not metrics; "steps" is.
        assert set(group["metrics"]) == {"score", "steps"}
        stats = group["metrics"]["score"]
        assert (stats["n"], stats["n_missing"]) == (n, 3)
        assert stats["mean"] == pytest.approx(statistics.mean(values))
        assert stats["min"] == min(values)
        assert stats["max"] == max(values)
        assert stats["median"] == pytest.approx(statistics.median(values))
        if n == 1:
            assert stats["stdev"] is None
            assert stats["ci95"] is None
        else:
            stdev = statistics.stdev(values)
            assert stats["stdev"] == pytest.approx(stdev)
            half = T975[n - 1] * stdev / math.sqrt(n)
            low, high = stats["ci95"]
            assert low == pytest.approx(statistics.mean(values) - half, rel=1e-4)
            assert high == pytest.approx(statistics.mean(values) + half, rel=1e-4)
    json.dumps(groups, allow_nan=False)  # strict JSON


def test_groups_by_tag_and_values_of_every_kind() -> None:
    flows = [
        flow(0, matrix={"on": True}, tags=["smoke", "x"], metrics={"m": 1}),
        flow(1, "failed", matrix={"on": 1}, tags=["smoke"], metrics={"m": 10**5000}),
        flow(2, "timeout", matrix={"on": "1"}, tags=["smoke", "smoke"]),
        flow(3, "not_run", tags=["x"]),
        flow(4),
        {"name": "odd", "matrix": ["not", "a", "table"], "tags": "nope", "status": "passed"},
    ]
    groups = compute_groups(flows)
    # true, 1 and "1" are three values (a dict would take True and 1 for one key).
    on = next(x for x in groups if x["by"] == "on")["groups"]
    assert [(type(g["value"]), g["value"]) for g in on] == [(bool, True), (int, 1), (str, "1")]
    assert [g["metrics"]["m"]["n"] for g in on] == [1, 0, 0]
    tags = grouping(groups, "tag")
    assert list(tags) == ["smoke", "x"]
    assert tags["smoke"]["n"] == 3
    assert tags["smoke"]["pass_rate"] == pytest.approx(1 / 3)
    assert tags["x"]["pass_rate"] == 1.0
    # An integer too large for a float is not a number the statistics can use.
    assert tags["smoke"]["metrics"]["m"]["n_missing"] == 2
    assert compute_groups([flow(0), flow(1)]) == []


def test_a_group_with_no_decided_flow_has_no_pass_rate() -> None:
    groups = compute_groups([flow(0, "skipped", tags=["t"]), flow(1, "not_run", tags=["t"])])
    assert grouping(groups, "tag")["t"]["pass_rate"] is None


# --- comparing two runs ----------------------------------------------------------------------


def test_proportion_difference_is_newcombes_interval() -> None:
    drop = proportion_difference(27, 30, 12, 30)
    assert drop.difference == pytest.approx(-0.5)
    assert drop.significant
    assert drop.interval.high < 0
    same = proportion_difference(27, 30, 26, 30)
    assert not same.significant
    # One flow each way is no evidence (a Wald interval would call it certain).
    assert not proportion_difference(1, 1, 0, 1).significant
    # Newcombe's worked example (Statistics in Medicine 1998, table II, method 10): 56/70 vs
    # 48/80 gives 0.2 with [0.0524, 0.3339] (here new - base, so the signs turn).
    example = proportion_difference(48, 80, 56, 70)
    assert example.interval.low == pytest.approx(0.0524, abs=1e-4)
    assert example.interval.high == pytest.approx(0.3339, abs=1e-4)


def test_welch_difference() -> None:
    a = [19.1, 20.4, 21.0, 18.7, 20.2, 19.9]
    b = [22.3, 21.7, 23.9, 22.8, 20.9, 24.4, 23.0]
    difference, interval = welch_difference(
        (statistics.mean(a), statistics.stdev(a), len(a)),
        (statistics.mean(b), statistics.stdev(b), len(b)),
    )
    assert difference == pytest.approx(statistics.mean(b) - statistics.mean(a))
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    assert (interval.low, interval.high) == pytest.approx((difference - half, difference + half))
    assert interval.excludes_zero
    assert welch_difference((3.0, 0.0, 2), (3.0, 0.0, 2))[1].excludes_zero is False


def run_of(pass_rates: dict[str, float], n: int = 30, seed: int = 0) -> dict[str, Any]:
    """A report whose variant V passes the first round(rate * n) of its n flows."""
    rng = random.Random(seed)
    flows = []
    for variant, rate in pass_rates.items():
        passed = round(rate * n)
        for i in range(n):
            metrics = {"score": rng.gauss(5, 1)}
            status = "passed" if i < passed else "failed"
            flows.append(flow(len(flows), status, matrix={"variant": variant}, metrics=metrics))
    return {"run_id": f"run-{seed}", "flows": flows}


def test_a_pass_rate_that_falls_from_90_to_40_percent_is_a_regression() -> None:
    base = run_of({"a": 0.9, "b": 0.9})
    new = run_of({"a": 0.9, "b": 0.4}, seed=1)
    comparison = compare_reports(base, new)
    labels = [(g.by, g.value) for g in comparison.groups]
    assert labels == [("all", "every flow"), ("variant", "a"), ("variant", "b")]
    assert [(g.by, g.value) for g in comparison.regressions] == [
        ("all", "every flow"),
        ("variant", "b"),
    ]
    b = comparison.groups[2]
    assert b.pass_rate is not None
    assert (b.pass_rate.base_k, b.pass_rate.base_n, b.pass_rate.new_k) == (27, 30, 12)
    assert not any(m.significant for m in b.metrics)  # the same score distribution
    only = compare_reports(base, new, "variant")
    assert [g.value for g in only.groups] == ["a", "b"]


def test_two_runs_of_the_same_distribution_show_no_regression() -> None:
    base = run_of({"a": 0.9, "b": 0.6}, seed=2)
    new = run_of({"a": 0.9, "b": 0.6}, seed=3)
    comparison = compare_reports(base, new)
    assert comparison.regressions == []
    assert all(g.pass_rate is not None and not g.pass_rate.significant for g in comparison.groups)


def test_runs_of_one_pass_rate_rarely_show_a_drop_and_a_real_fall_nearly_always() -> None:
    """Pass counts drawn at random (n = 30 a side, a fixed seed): two runs of one pass rate are
    flagged as a drop in about 2.5% of pairs (one tail of a 95% interval), never above 5%; a
    fall from 90% to 40% is flagged in nearly every pair."""
    rng = random.Random(7)

    def draw(rate: float) -> int:
        return sum(rng.random() < rate for _ in range(30))

    pairs = 1000
    for rate in (0.6, 0.9):
        drops = sum(
            proportion_difference(draw(rate), 30, draw(rate), 30).interval.high < 0
            for _ in range(pairs)
        )
        assert drops / pairs <= 0.05, (rate, drops)
    caught = sum(
        proportion_difference(draw(0.9), 30, draw(0.4), 30).interval.high < 0 for _ in range(pairs)
    )
    assert caught / pairs >= 0.95


def test_groups_only_one_run_has() -> None:
    comparison = compare_reports(run_of({"a": 1.0}, n=3), run_of({"b": 1.0}, n=3))
    sides = {g.value: (g.base is not None, g.new is not None) for g in comparison.groups}
    assert sides == {"every flow": (True, True), "a": (True, False), "b": (False, True)}
    assert comparison.available == ["variant"]


# --- the HTML part and merged reports ---------------------------------------------------------


def test_groups_section_shows_a_table_and_a_plot_per_metric() -> None:
    report = run_of({"<a&b>": 0.5, "b": 1.0}, n=4)
    report["flows"][0]["metrics"]["model_name"] = "x"
    page = groups_section(report)
    assert page.startswith('<section id="groups">')
    assert "by matrix axis variant" in page
    assert "&lt;a&amp;b&gt;" in page
    assert "<a&b>" not in page
    assert page.count("<svg") == 1 + 2  # one plot (score), a pass-rate bar per group
    assert "http" not in page.replace("http://www.w3.org", "")
    assert "model_name" not in page
    assert groups_section({"flows": [flow(0)]}) == ""
    assert groups_section({}) == ""


def test_a_merge_recomputes_groups_from_every_shard(tmp_path: Path) -> None:
    whole = run_of({"a": 0.5, "b": 1.0}, n=4)
    shards = []
    for number, part in enumerate((whole["flows"][::2], whole["flows"][1::2]), start=1):
        report = {
            "schema": "pytest-runset/report@1",
            "run_id": f"s{number}",
            "runset": {"name": "x", "sha256": "0" * 64, "file": "/nowhere/run-set.toml"},
            "started_at": "2026-01-01T00:00:00.000Z",
            "finished_at": "2026-01-01T00:00:01.000Z",
            "wall_s": 1.0,
            "workers": 1,
            "flows": part,
            "groups": compute_groups(part),
        }
        path = tmp_path / f"s{number}" / "report.json"
        shards.append(Shard(path=path, report=report, number=number))
    merged = merge_reports(shards, tmp_path / "merged" / "report.json").report
    assert merged["groups"] == compute_groups(whole["flows"])

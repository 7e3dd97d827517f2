"""A flow's metrics are plain, finite, bounded JSON data, or the flow is told they are not."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_runset.gateway.metrics import check_metrics, metrics_problem
from pytest_runset.gateway.protocol import AttemptResult


def _nested(levels: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    inner = data
    for _ in range(levels - 1):
        inner["x"] = {}
        inner = inner["x"]
    return data


def test_plain_json_data_is_fine() -> None:
    metrics = {"s": "x", "i": 10**300, "f": 0.5, "b": True, "n": None, "l": [1, [2, {"k": "v"}]]}
    assert metrics_problem(metrics) is None
    assert metrics_problem(_nested(64)) is None


@pytest.mark.parametrize(
    ("metrics", "problem"),
    [
        (_nested(400), "nested more than 64 levels deep (at metrics.x.x.x"),
        ({"a": float("nan")}, "metrics.a is nan, not a finite number"),
        ({"a": [1, float("inf")]}, "metrics.a[1] is inf, not a finite number"),
        ({"a": -float("inf")}, "metrics.a is -inf, not a finite number"),
        ({"a": {1: "x"}}, "metrics.a has a key that is not a string (an int)"),
        ({"a": {1, 2}}, "metrics.a is a set, not JSON data"),
        ({"a": (1, 2)}, "metrics.a is a tuple, not JSON data"),
        ({"a": object()}, "metrics.a is an object, not JSON data"),
        ({"a": 10**5000}, "metrics.a is an integer of more than 3900 digits"),
        ({"a": "x" * (2 * 1024 * 1024)}, "larger than 1024 KiB"),
        ([1], "metrics must be an object, not a list"),
    ],
)
def test_malformed_metrics_are_named(metrics: Any, problem: str) -> None:
    found = metrics_problem(metrics)
    assert found is not None
    assert found.startswith(problem), found


def test_a_million_levels_cannot_exhaust_the_stack() -> None:
    deep: list[Any] = []
    for _ in range(1_000_000):
        deep = [deep]
    found = metrics_problem({"a": deep})
    assert found is not None
    assert found.startswith("nested more than 64 levels deep")


def test_a_passing_flow_with_malformed_metrics_is_an_error_without_them() -> None:
    result: AttemptResult = {"status": "passed", "message": "", "metrics": {"a": float("nan")}}
    check_metrics(result)
    assert result["status"] == "error"
    assert result["message"] == (
        "malformed metrics: metrics.a is nan, not a finite number (JSON has no NaN/Infinity)"
    )
    assert result["metrics"] == {}


def test_a_failed_flow_keeps_its_failure_and_is_warned() -> None:
    result: AttemptResult = {
        "status": "failed",
        "message": "exit code 1",
        "metrics": _nested(400),
        "warnings": [],
    }
    check_metrics(result)
    assert result["status"] == "failed"
    assert result["message"] == "exit code 1"
    assert result["metrics"] == {}
    assert result["warnings"][0].startswith("malformed metrics: nested more than 64 levels deep")
    assert result["warnings"][0].endswith("; dropped")


def test_good_metrics_are_left_alone() -> None:
    result: AttemptResult = {"status": "passed", "message": "", "metrics": {"rows": 3}}
    check_metrics(result)
    assert result == {"status": "passed", "message": "", "metrics": {"rows": 3}}

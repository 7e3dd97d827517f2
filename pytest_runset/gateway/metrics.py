"""A flow's metrics, checked before they leave the worker.

Metrics come from the flow (``$RUNSET_REPORT``, a callable's report) and end up in
``result.json``, the journal and ``report.json``: strict JSON that other tools read. On the way
they cross the execnet channel, whose serializer recurses once per level (deep data fails the
send, and the controller would wait for a result that never comes). So metrics must be plain
JSON data: ``str``, ``int``, finite ``float``, ``bool``, ``None``, lists, and dicts with string
keys; at most :data:`~pytest_runset.gateway.safe_files.MAX_NESTING` levels deep and
:data:`MAX_METRICS_BYTES` of JSON.

A flow whose metrics are not is told so (:func:`check_metrics`): its metrics are dropped, and a
flow that passed ends ``error`` with ``malformed metrics: <what and where>``; a flow that
already failed keeps its own failure, with the problem as a warning. Never a silent pass with
data missing, never a report that is not JSON.

Stdlib only, like the rest of the gateway side.
"""

from __future__ import annotations

import math

from pytest_runset.gateway.protocol import AttemptResult
from pytest_runset.gateway.safe_files import MAX_NESTING

MAX_METRICS_BYTES = 1024 * 1024
# Python prints at most 4300 digits of an int (sys.get_int_max_str_digits); stay below it.
_MAX_INT_BITS = 13_000
_MAX_WHERE = 80
# Outcomes that claim the flow worked: malformed metrics turn them into an error.
_CLAIMS_SUCCESS = frozenset({"passed", "skipped", "xfailed", "xpassed"})


def metrics_problem(
    metrics: object, max_depth: int = MAX_NESTING, max_bytes: int = MAX_METRICS_BYTES
) -> str | None:
    """What is wrong with ``metrics`` (naming where), or ``None`` for plain JSON data within
    the limits. Iterative: no depth of input can exhaust the stack."""
    if not isinstance(metrics, dict):
        return f"metrics must be an object, not {_kind(metrics)}"
    size = 0
    stack: list[tuple[object, str, int]] = [(metrics, "metrics", 0)]
    while stack:
        value, where, depth = stack.pop()
        if value is None or isinstance(value, bool):
            size += 5
        elif isinstance(value, int):
            if value.bit_length() > _MAX_INT_BITS:
                return f"{_short(where)} is an integer of more than 3900 digits"
            size += 20
        elif isinstance(value, float):
            if not math.isfinite(value):
                return (
                    f"{_short(where)} is {value!r}, not a finite number (JSON has no NaN/Infinity)"
                )
            size += 24
        elif isinstance(value, str):
            size += len(value) + 2
        elif isinstance(value, list | dict):
            if depth >= max_depth:
                return f"nested more than {max_depth} levels deep (at {_short(where)})"
            size += 2
            children: list[tuple[object, str, int]] = []
            if isinstance(value, list):
                children = [(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
            else:
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"{_short(where)} has a key that is not a string ({_kind(key)})"
                    size += len(key) + 3
                    children.append((item, f"{where}.{key[:40]}", depth + 1))
            # Reversed onto the stack: the first problem in the data's own order is named.
            stack.extend(reversed(children))
        else:
            return f"{_short(where)} is {_kind(value)}, not JSON data"
        if size > max_bytes:
            return f"larger than {max_bytes // 1024} KiB"
    return None


def check_metrics(result: AttemptResult) -> None:
    """Drop malformed ``metrics`` from an attempt's ``result`` and say so (see the module
    docstring): a passing outcome becomes ``error``, a failure keeps its status."""
    problem = metrics_problem(result.get("metrics", {}))
    if problem is None:
        return
    result["metrics"] = {}
    text = f"malformed metrics: {problem}"
    warnings = result.setdefault("warnings", [])
    if result.get("status", "passed") in _CLAIMS_SUCCESS:
        result["status"] = "error"
        result["message"] = text
    else:
        warnings.append(f"{text}; dropped")


def _kind(value: object) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _short(where: str) -> str:
    return where if len(where) <= _MAX_WHERE else where[: _MAX_WHERE - 3] + "..."

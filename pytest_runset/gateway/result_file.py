"""An attempt's ``result.json``: checked, strict JSON, written through the flow directory the
worker opened before the flow ran; and what to say when a result cannot be written or sent.

The invariant: every attempt that reaches its end leaves the controller something it can read.
Metrics are checked first (:mod:`.metrics`); a result that still is not JSON, or that the
channel cannot carry, becomes a minimal ``error`` result saying why (:func:`fallback_result`),
never a silence that the controller would wait out until its backstop.

Stdlib only, like the rest of the gateway side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pytest_runset.gateway import flow_dir
from pytest_runset.gateway.metrics import check_metrics
from pytest_runset.gateway.protocol import AttemptResult, AttemptSpec

RESULT_NAME = "result.json"


def write_json(directory: flow_dir.FlowDir, name: str, data: Mapping[str, Any]) -> None:
    """Write ``name`` in the flow's open directory as strict JSON (``ValueError`` for NaN or
    Infinity), replacing whatever the flow left at that name, never writing through it."""
    # json.dumps without indent runs the C encoder; json.dump and indent the Python one.
    text = json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n"
    directory.write_bytes(name, text.encode("utf-8"))


def write_result(spec: AttemptSpec, result: AttemptResult) -> AttemptResult:
    """Write the attempt's ``result.json``, then close the attempt's directory; return the
    result as written (the one to send).

    A flow that moved or removed its directory is told so in a warning, and nothing is written
    through what took its place. A result that is not JSON (a bug) is replaced by
    :func:`fallback_result`.
    """
    check_metrics(result)
    path = spec["flow_dir"]
    directory = flow_dir.opened(path)
    try:
        if directory is None:
            # Not opened when the attempt started (a link in its place): refused again here.
            directory = flow_dir.FlowDir.open(path)
        problem = directory.problem()
        if problem is not None:
            result.setdefault("warnings", []).append(problem)
        try:
            write_json(directory, RESULT_NAME, result)
        except (TypeError, ValueError, RecursionError) as exc:
            result = fallback_result(result, f"{RESULT_NAME}: {type(exc).__name__}: {exc}")
            write_json(directory, RESULT_NAME, result)
    except OSError as exc:
        warning = f"could not write {RESULT_NAME}: {exc.strerror or exc}"
        result.setdefault("warnings", []).append(warning)
    finally:
        if directory is not None:
            directory.close()
        flow_dir.release(path)
    return result


def fallback_result(result: Mapping[str, Any], why: str) -> AttemptResult:
    """What is left to say about an attempt whose result cannot be written or sent as it is:
    ``error``, why, and the plain fields that identify and time it."""
    fallback: AttemptResult = {
        "status": "error",
        "exit_code": None,
        "message": f"the flow's result could not be recorded ({why[:300]})",
        "metrics": {},
        "artifacts": [],
        "warnings": [],
    }
    for key in ("flow_id", "attempt", "started_at", "duration_s", "leftover_processes"):
        value = result.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            fallback[key] = value
    status, message = result.get("status"), result.get("message")
    if isinstance(status, str) and isinstance(message, str):
        fallback["warnings"].append(f"it had ended {status[:20]}: {message[:1000]}")
    if result.get("retire") is True:
        fallback["retire"] = True
    return fallback

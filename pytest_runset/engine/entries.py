"""Report entries of flows and the plain results of attempts that never reached a worker."""

from __future__ import annotations

import time

from pytest_runset.engine.state import FlowState
from pytest_runset.gateway.protocol import AttemptResult, AttemptStatus
from pytest_runset.model.flows import Flow
from pytest_runset.results.formats import FlowEntry, FlowLogs, FlowResources, FlowStatus

# A flow that never ran (or ran on a worker of an older release) used nothing measurable.
NO_RESOURCES: FlowResources = {"cpu_s": 0.0, "peak_memory_bytes": None}


def flow_entry(
    state: FlowState, status: FlowStatus, message: str, flaky: bool, session_started: float
) -> FlowEntry:
    """The report entry of a flow that ran (its last attempt decides the fields)."""
    last = state.attempts[-1]
    flow = state.flow
    dir_name = last.get("dir")
    run_started = state.run.started_at or session_started
    started_s = round(max(0.0, float(last.get("started_at") or run_started) - run_started), 6)
    artifacts = [f"{dir_name}/{path}" for path in last.get("artifacts", [])]
    logs: FlowLogs = (
        {"stdout": f"{dir_name}/stdout.log", "stderr": f"{dir_name}/stderr.log"} if dir_name else {}
    )
    entry: FlowEntry = {
        "name": flow.name,
        "slug": flow.slug,
        "nodeid": state.item.nodeid,
        "kind": flow.kind,
        "status": status,
        "attempts": len(state.attempts),
        "flaky": flaky,
        "index": flow.index,
        "duration_s": round(float(last.get("duration_s") or 0.0), 6),
        "started_s": started_s,
        "worker": state.worker_id,
        "slot": state.slot,
        "exit_code": last.get("exit_code"),
        "message": message,
        "dir": dir_name,
        "logs": logs,
        "result": f"{dir_name}/result.json" if dir_name else None,
        "artifacts": artifacts,
        "persona": state.persona,
        "ports": list(state.ports),
        "tags": list(flow.tags),
        "leftover_processes": int(last.get("leftover_processes") or 0),
        "resources": dict(last.get("resources") or NO_RESOURCES),  # type: ignore[typeddict-item]
        "metrics": last.get("metrics", {}),
        "warnings": last.get("warnings", []),
        "definition_sha256": flow.sha256,
        "history": [
            {
                "attempt": attempt["attempt"],
                "status": attempt["status"],
                "dir": attempt["dir"],
                "duration_s": attempt.get("duration_s"),
                "exit_code": attempt.get("exit_code"),
                "message": attempt.get("message", ""),
                "started_s": _since(attempt.get("started_at"), run_started),
                "worker": attempt.get("worker") or None,
                # Every attempt's, so the journal keeps what a retried flow measured each time.
                "metrics": attempt.get("metrics", {}),
            }
            for attempt in state.attempts
        ],
    }
    # What the HTML report shows of a failure: its full text and the steps it got through.
    if last.get("details"):
        entry["details"] = str(last["details"])
    if "steps" in last:
        entry["steps"] = [
            {"label": step["label"], "duration_s": step["duration_s"]} for step in last["steps"]
        ]
    if "failed_step" in last:
        entry["failed_step"] = last["failed_step"]
    return with_matrix(entry, flow)


def with_matrix(entry: FlowEntry, flow: Flow) -> FlowEntry:
    """``entry`` with the flow's matrix values (grouped by results/groups.py), if it has any."""
    if flow.matrix is not None:
        entry["matrix"] = dict(flow.matrix)
    # And the project a browser flow's copy runs in (model/projects.py).
    if flow.project is not None:
        entry["project"] = flow.project
    return entry


def _since(started_at: float | None, run_started: float) -> float | None:
    """Seconds from the run's start to an attempt's (``None`` for one that never started)."""
    if not started_at:
        return None
    return round(max(0.0, float(started_at) - run_started), 6)


def unstarted_entry(flow: Flow, nodeid: str, status: FlowStatus, message: str) -> FlowEntry:
    """The report entry of a flow that never started (skipped, not run)."""
    entry: FlowEntry = {
        "name": flow.name,
        "slug": flow.slug,
        "nodeid": nodeid,
        "kind": flow.kind,
        "status": status,
        "attempts": 0,
        "flaky": False,
        "index": flow.index,
        "duration_s": 0.0,
        "started_s": None,
        "worker": None,
        "slot": None,
        "exit_code": None,
        "message": message,
        "dir": None,
        "logs": {},
        "result": None,
        "artifacts": [],
        "persona": None,
        "ports": [],
        "tags": list(flow.tags),
        "leftover_processes": 0,
        "resources": dict(NO_RESOURCES),  # type: ignore[typeddict-item]
        "metrics": {},
        "warnings": [],
        "definition_sha256": flow.sha256,
        "history": [],
    }
    return with_matrix(entry, flow)


def unstarted_result(
    attempt: int, message: str, *, stderr_tail: str = "", tail_source: str = ""
) -> AttemptResult:
    """An attempt that ends as ``error`` before it reached a worker (a lease wait that
    expired, a dead service): it ran nowhere, so it has no directory and no worker."""
    result = local_result(attempt, "error", message)
    result["duration_s"] = 0.0
    result["started_at"] = time.time()
    result["dir"] = None
    result["worker"] = ""
    if stderr_tail or tail_source:
        result["stderr_tail"] = stderr_tail
        result["tail_source"] = tail_source
    return result


def local_result(attempt: int, status: AttemptStatus, message: str) -> AttemptResult:
    """The result of an attempt the controller ended itself (no worker reported it)."""
    return {
        "attempt": attempt,
        "status": status,
        "exit_code": None,
        "message": message,
        "metrics": {},
        "artifacts": [],
        "warnings": [],
        "leftover_processes": 0,
    }

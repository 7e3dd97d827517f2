"""One flow's attempts from lease to report entry, shared by the run loop and xdist workers.

The run loop (its own pool) and a pytest-xdist worker (one local gateway) differ only in *where*
an attempt runs and who waits for it. Everything else - the leases a flow holds, its workspace,
its spec, how an attempt's result is recorded and how the last one becomes the flow's report
entry - happens here, so that both give the same statuses, directories and entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_runset.engine.attempt import (
    Attempt,
    AttemptError,
    ContainmentPlan,
    build_attempt,
    make_flow_dir,
)
from pytest_runset.engine.entries import flow_entry
from pytest_runset.engine.marks import xfail_mark
from pytest_runset.engine.state import FlowState
from pytest_runset.gateway import flow_dir
from pytest_runset.gateway.masking import mask_result
from pytest_runset.gateway.protocol import AttemptResult
from pytest_runset.gateway.result_file import RESULT_NAME, write_json
from pytest_runset.model.placeholders import PlaceholderError
from pytest_runset.model.slugs import UnsafePathError, attempt_dir_name
from pytest_runset.resources.workspace import (
    GIT_LOCAL_ENV_VARS,
    WorkspaceError,
    create_workspace,
    remove_workspace,
)
from pytest_runset.results.formats import FlowEntry, FlowStatus

# Problems that end an attempt before it reaches a worker (the flow is ``error``).
CANNOT_START = (PlaceholderError, UnsafePathError, OSError, AttemptError, WorkspaceError)


def prepare_attempt(
    config: pytest.Config,
    state: FlowState,
    *,
    slot: int,
    worker_id: str,
    attempt: int,
    run_id: str,
    timeout_override: float | None,
    lock_dir: Callable[[], Path],
    containment: ContainmentPlan | None = None,
) -> Attempt:
    """The spec of one attempt of a flow whose leases (``state.lease``) are held.

    Creates the slug directory (and the workspace, if the flow asks for one) and records in
    ``state`` what the attempt uses. Raises what :func:`build_attempt` and
    :func:`create_workspace` raise when the attempt cannot start.
    """
    state.dispatched_at = time.monotonic()
    state.slot = slot
    state.worker_id = worker_id
    flow = state.flow
    run = state.run
    lease = state.lease
    state.persona = lease.persona if lease is not None else None
    state.ports = list(lease.ports) if lease is not None else []
    persona = run.runset.personas[state.persona] if state.persona else None
    workdir = None
    if flow.workspace != "none":
        target = run.directory.path / attempt_dir_name(flow.slug, attempt)
        make_flow_dir(target)
        state.workspace = create_workspace(
            flow.workspace,
            source_dir=run.runset.directory,
            flow_dir=target,
            lock_dir=lock_dir(),
            exclude=[run.directory.output_root],
        )
        workdir = state.workspace.path
        # The checkout is the runner's time, not the flow's: its clock starts now.
        state.dispatched_at = time.monotonic()
    built = build_attempt(
        config,
        flow=flow,
        runset=run.runset,
        run_id=run_id,
        run_dir=run.directory.path,
        base_url=run.base_url,
        slot=slot,
        worker_id=worker_id,
        attempt=attempt,
        timeout_override=timeout_override,
        persona=persona,
        ports=state.ports,
        service_values=run.service_values,
        workdir=workdir,
        containment=containment,
    )
    if state.workspace is not None and state.workspace.kind == "worktree":
        built.spec["env_unset"] = list(GIT_LOCAL_ENV_VARS)
    state.cookie = built.cookie
    state.env = built.env
    state.secrets = built.secrets
    return built


def release_attempt(state: FlowState, status: str, lock_dir: Callable[[], Path]) -> list[str]:
    """Give back what the attempt held (leases, workspace); return warnings worth reporting."""
    warnings: list[str] = []
    if state.lease is not None:
        state.lease.release()
        warnings.extend(state.lease.lost)
        state.lease = None
    if state.workspace is not None:
        problem = remove_workspace(state.workspace, lock_dir=lock_dir(), keep=status != "passed")
        if problem:
            warnings.append(problem)
        state.workspace = None
    return warnings


def record_attempt(
    state: FlowState, result: AttemptResult, lock_dir: Callable[[], Path]
) -> AttemptResult:
    """Release the attempt's holdings and append its (masked) result to ``state.attempts``."""
    if state.secrets:
        # Text only: a secret that reads "fail" must not rewrite the status.
        result = mask_result(result, state.secrets)
    warnings = release_attempt(state, str(result.get("status")), lock_dir)
    if warnings:
        result["warnings"] = [*result.get("warnings", []), *warnings]
    result.setdefault("started_at", time.time())
    result.setdefault("duration_s", round(time.monotonic() - state.dispatched_at, 6))
    attempt = int(result.get("attempt") or len(state.attempts) + 1)
    result["attempt"] = attempt
    dir_name = attempt_dir_name(state.flow.slug, attempt)
    result["dir"] = dir_name
    result["worker"] = state.worker_id
    _result_file_if_missing(state.run.directory.path / dir_name, result)
    state.attempts.append(result)
    return result


def _result_file_if_missing(target: Path, result: AttemptResult) -> None:
    """An attempt whose worker never wrote ``result.json`` (it died: a crash, a memory kill,
    a flow that killed it) still gets one, written by the controller: every attempt directory
    holds its result. Through the directory's own descriptor, never through a planted link."""
    if not target.is_dir() or (target / RESULT_NAME).exists():
        return
    try:
        directory = flow_dir.FlowDir.open(str(target))
    except OSError:
        return
    try:
        write_json(directory, RESULT_NAME, result)
    except (OSError, ValueError):
        pass
    finally:
        directory.close()


@dataclass(frozen=True)
class Outcome:
    """A finished flow: its report entry and what pytest is told."""

    entry: FlowEntry
    status: FlowStatus
    last: AttemptResult
    xfail_reason: str
    # Passed on a retry, failed by --runset-fail-on-flaky.
    failed_as_flaky: bool = False


def conclude(state: FlowState, *, fail_on_flaky: bool, session_started: float) -> Outcome:
    """The flow's final status from its last attempt, xfail marks and ``--runset-fail-on-flaky``."""
    last = state.attempts[-1]
    status: FlowStatus = last["status"]
    flaky = status == "passed" and len(state.attempts) > 1
    xfail = xfail_mark(state.item)
    message = str(last.get("message") or "")
    if xfail is not None and status in ("passed", "failed", "error", "timeout"):
        if status == "passed":
            if xfail.strict:
                status, message = "failed", f"[XPASS(strict)] {xfail.reason}".strip()
            else:
                status = "xpassed"
        else:
            status, message = (
                "xfailed",
                f"{xfail.reason}: {message}" if xfail.reason else message,
            )
    failed_as_flaky = flaky and fail_on_flaky and status == "passed"
    if failed_as_flaky:
        status = "failed"
        message = f"flaky: passed on attempt {len(state.attempts)} (--runset-fail-on-flaky)"
    entry = flow_entry(state, status, message, flaky, session_started)
    return Outcome(
        entry=entry, status=status, last=last, xfail_reason=xfail.reason if xfail else ""
    )

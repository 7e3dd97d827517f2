"""Running flows one at a time through ``RunsetItem.runtest`` (inside pytest-xdist workers).

When pytest-xdist distributes the session, each xdist worker runs its flows here: through one
local gateway of its own (started at the first flow and kept warm), with the same runner,
timeouts, process-tree kills and slug directories as the pool. Retries apply too.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import proctree
from .attempt import build_attempt
from .placeholders import PlaceholderError
from .pool import Pool
from .slugs import UnsafePathError

if TYPE_CHECKING:
    from .collect import RunsetItem

SINGLE_POOL = pytest.StashKey[Pool]()
READY_TIMEOUT_S = 120.0
BACKSTOP_MARGIN_S = 10.0


class FlowFailed(Exception):
    """A flow that did not pass; ``str()`` is the failure text pytest shows."""


def _slot(config: pytest.Config) -> tuple[int, str]:
    workerinput = getattr(config, "workerinput", None)
    worker_id = str(workerinput.get("workerid", "gw0")) if workerinput else "gw0"
    digits = "".join(ch for ch in worker_id if ch.isdigit())
    return (int(digits) if digits else 0), worker_id


def _pool(config: pytest.Config) -> Pool:
    pool = config.stash.get(SINGLE_POOL, None)
    if pool is None:
        pool = Pool(1)
        pool.start()
        config.stash[SINGLE_POOL] = pool
    return pool


def shutdown(config: pytest.Config) -> None:
    pool = config.stash.get(SINGLE_POOL, None)
    if pool is not None:
        pool.shutdown()
        _sweep_browser(config)


def _sweep_browser(config: pytest.Config) -> None:
    """This xdist worker's warm browser runs in a process group of its own: find it by cookie."""
    from .plugin import session_run_id

    proctree.sweep_cookie(proctree.browser_cookie(session_run_id(config), _slot(config)[1]))


def _wait_ready(pool: Pool) -> None:
    handle = pool.workers[0]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not handle.ready:
        try:
            event = pool.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise FlowFailed("error: the flow's worker did not start in time") from None
        if event.kind == "spawn_failed":
            raise FlowFailed(f"error: the flow's worker could not start: {event.data['error']}")
        handle = pool.workers[0]


def _run_attempt(item: RunsetItem, attempt: int) -> dict[str, Any]:
    from .plugin import output_root, session_run_id

    config = item.config
    slot, worker_id = _slot(config)
    run_id = session_run_id(config)
    run_dir = output_root(config, item.runset) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    pool = _pool(config)
    _wait_ready(pool)
    try:
        built = build_attempt(
            config,
            flow=item.flow,
            runset=item.runset,
            run_id=run_id,
            run_dir=Path(run_dir),
            base_url=config.option.runset_base_url or item.runset.settings.base_url,
            slot=slot,
            worker_id=worker_id,
            attempt=attempt,
            timeout_override=_timeout_override(config),
        )
    except (PlaceholderError, UnsafePathError, OSError) as exc:
        return {"status": "error", "message": str(exc), "exit_code": None}
    generation = pool.workers[0].generation
    if not pool.send(0, "run", built.spec):
        return {"status": "error", "message": "worker unreachable", "exit_code": None}
    backstop = time.monotonic() + built.timeout_s + item.flow.kill_grace_s + BACKSTOP_MARGIN_S
    while True:
        try:
            event = pool.events.get(timeout=max(0.0, backstop - time.monotonic()))
        except queue.Empty:
            pool.kill(0)
            _sweep_browser(config)
            proctree.sweep_cookie(built.cookie)
            pool.spawn(0)
            return {
                "status": "timeout",
                "message": f"timeout after {built.timeout_s:g}s (worker unresponsive; killed)",
                "exit_code": None,
            }
        if event.generation != generation:
            continue
        if event.kind == "finished":
            if event.data.get("retire"):
                pool.kill(0)
                _sweep_browser(config)
                pool.spawn(0)
            return event.data
        if event.kind in ("died", "spawn_failed"):
            _sweep_browser(config)
            proctree.sweep_cookie(built.cookie)
            pool.spawn(0)
            return {"status": "error", "message": "worker crashed", "exit_code": None}


def _timeout_override(config: pytest.Config) -> float | None:
    raw = config.option.runset_timeout
    if raw is None:
        return None
    from .model import parse_duration

    return parse_duration(raw)


def run_single(item: RunsetItem) -> None:
    retries = item.config.option.runset_retries
    allowed = (retries if retries is not None else item.flow.retries) + 1
    result: dict[str, Any] = {}
    for attempt in range(1, allowed + 1):
        result = _run_attempt(item, attempt)
        if result.get("status") not in ("failed", "timeout", "error"):
            break
    status = result.get("status")
    message = str(result.get("message") or "")
    if status == "passed":
        return
    if status == "skipped":
        pytest.skip(message or "skipped")
    if status == "xfailed":
        pytest.xfail(message or "xfailed")
    lines = [f"{status}: {message}".rstrip(": ")]
    details = str(result.get("details") or "").rstrip()
    if details:
        lines += ["--- details ---", details]
    tail = str(result.get("stderr_tail") or "").rstrip()
    if tail:
        lines += ["--- last lines of stderr.log ---", tail]
    if result.get("artifacts"):
        lines.append(f"artifacts: {', '.join(result['artifacts'])}")
    raise FlowFailed("\n".join(lines))

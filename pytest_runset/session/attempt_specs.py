"""The spec of each attempt the run loop sends to a gateway of its pool.

Local gateways get the attempt as :func:`~pytest_runset.engine.lifecycle.prepare_attempt`
builds it; remote ones get it with the remote host's paths, the ports the flow holds there,
and a receiver for the files that come back. Each attempt's supervision (its backstop) starts
when its spec is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_runset.engine.attempt import AttemptError, ContainmentPlan
from pytest_runset.engine.lifecycle import prepare_attempt
from pytest_runset.engine.pool import Pool, WorkerHandle
from pytest_runset.engine.state import FlowState
from pytest_runset.engine.supervision import Supervision
from pytest_runset.gateway.protocol import AttemptSpec
from pytest_runset.gateway.transfer import Receiver
from pytest_runset.session.scaleout import Scaleout, remote_spec


class AttemptSpecs:
    """Builds the attempts of one run loop; remembers what must be cleaned up after it."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        pool: Pool,
        run_id: str,
        timeout_override: float | None,
        supervision: Supervision,
        scaleout: Scaleout | None,
        lock_dir: Callable[[], Path],
        containment: ContainmentPlan | None = None,
    ) -> None:
        self.config = config
        self.containment = containment
        self.pool = pool
        self.run_id = run_id
        self.timeout_override = timeout_override
        self.supervision = supervision
        self.scaleout = scaleout
        self.lock_dir = lock_dir
        # Workers that were given browser flows: their warm browsers are swept with them.
        self.browser_workers: set[str] = set()
        self.markers: list[Path] = []

    def build(self, state: FlowState, slot: int, attempt: int) -> AttemptSpec:
        """The attempt's spec for the gateway on ``slot``; raises what ``prepare_attempt``
        raises when the attempt cannot start."""
        handle = self.pool.workers[slot]
        if handle.remote and state.flow.workspace != "none":
            raise AttemptError(
                f"workspace = {state.flow.workspace!r} needs a gateway on this machine "
                f"({handle.worker_id} is remote)"
            )
        built = prepare_attempt(
            self.config,
            state,
            slot=slot,
            worker_id=handle.worker_id,
            attempt=attempt,
            run_id=self.run_id,
            timeout_override=self.timeout_override,
            lock_dir=self.lock_dir,
            containment=self.containment,
        )
        if built.spec.get("browser"):
            self.browser_workers.add(handle.worker_id)
        state.watch = self.supervision.watch(
            state.dispatched_at, built.timeout_s, state.flow.kill_grace_s
        )
        if handle.remote and self.scaleout is not None:
            return self._remote(handle, self.scaleout, state, built.spec)
        return built.spec

    def _remote(
        self, handle: WorkerHandle, scaleout: Scaleout, state: FlowState, spec: AttemptSpec
    ) -> AttemptSpec:
        """The spec with the remote host's paths; its files come back into the flow dir."""
        if not handle.scratch:
            raise AttemptError(f"{handle.worker_id} reported no scratch directory")
        handle.receiver = Receiver(str(spec["flow_dir"]), scaleout.max_bytes)
        if state.ports:
            # Ports are host-local: the worker holds them on its host as well.
            spec = {**spec, "host_ports": {"ports": state.ports, "marker": self._marker()}}
        mapped = remote_spec(
            spec,
            host=str(handle.host),
            scratch=str(handle.scratch),
            run_dir=state.run.directory.path,
            runset_dir=state.run.runset.directory,
            remote_root=scaleout.remote_root,
            max_bytes=scaleout.max_bytes,
        )
        handle.receiver.source = str(mapped["flow_dir"])
        return mapped

    def _marker(self) -> str:
        """A file in the controller's lock directory that tells a worker on the same host (or
        sharing the directory) that the controller's port leases already hold there."""
        marker = self.lock_dir() / f"controller-{self.run_id}-{os.getpid()}.marker"
        if not marker.exists():
            marker.touch()
            self.markers.append(marker)
        return marker.name

    def remove_markers(self) -> None:
        for marker in self.markers:
            marker.unlink(missing_ok=True)

"""What the controller knows of each flow and each run-set while it runs.

Shared by the plugin's own pool and pytest-xdist workers. A flow's pytest item is handed in
(any ``pytest.Item``: the engine does not know the session's item class); its flow travels
beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from pytest_runset.engine.supervision import AttemptWatch
from pytest_runset.gateway.protocol import AttemptResult
from pytest_runset.resources.leases import Lease

if TYPE_CHECKING:
    from pytest_runset.model.flows import Flow, RunSet
    from pytest_runset.resources.services import Services
    from pytest_runset.resources.workspace import Workspace
    from pytest_runset.results.formats import FlowEntry, RunReport
    from pytest_runset.results.report import RunDirectory


@dataclass
class FlowState:
    item: pytest.Item
    flow: Flow
    run: RunsetRun
    attempts: list[AttemptResult] = field(default_factory=list)
    logstarted: bool = False
    dispatched_at: float = 0.0
    cookie: str = ""
    # Supervision of the attempt in flight (its backstop), from dispatch on.
    watch: AttemptWatch | None = None
    worker_id: str = ""
    slot: int = -1
    env: dict[str, str] = field(default_factory=dict)
    entry: FlowEntry | None = None
    lease: Lease | None = None
    persona: str | None = None
    ports: list[int] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    workspace: Workspace | None = None


class RunsetRun:
    """One run-set file's run: its directory, journal and flow entries."""

    def __init__(
        self,
        runset: RunSet,
        directory: RunDirectory,
        base_url: str | None,
        previous: dict[str, FlowEntry] | None = None,
        started_at: float | None = None,
    ) -> None:
        self.runset = runset
        self.directory = directory
        self.base_url = base_url
        # Final entries of flows an earlier session of this run already finished (resume).
        self.previous = previous or {}
        self.started_at = started_at
        self.entries: dict[str, FlowEntry] = {}
        # {services.<name>.port} values once the run's services are up.
        self.service_values: dict[str, str] = {}
        # Set when a service failed: every flow of the run that has not ended is an error.
        self.service_error: str | None = None
        # The failed service's log tail and its path in the run directory.
        self.service_tail = ""
        self.service_log = ""
        self.services: Services | None = None
        # The ports the run's services hold, for the whole run.
        self.service_lease = Lease()
        # Reports list flows in file order, whatever the completion order.
        self.order: dict[str, tuple[int, str]] = {}
        self.report_path: str | None = None
        self.report: RunReport | None = None

    @property
    def run_dir(self) -> str:
        return str(self.directory.path)

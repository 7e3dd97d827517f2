"""What the run loop knows of each flow and each run-set while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_runset.resources.leases import Lease

if TYPE_CHECKING:
    from pytest_runset.model.loader import Flow, RunSet
    from pytest_runset.resources.services import Services
    from pytest_runset.resources.workspace import Workspace
    from pytest_runset.results.report import RunDirectory
    from pytest_runset.session.collect import RunsetItem


@dataclass
class FlowState:
    item: RunsetItem
    run: RunsetRun
    attempts: list[dict[str, Any]] = field(default_factory=list)
    logstarted: bool = False
    dispatched_at: float = 0.0
    cookie: str = ""
    backstop: float = 0.0
    worker_id: str = ""
    slot: int = -1
    env: dict[str, str] = field(default_factory=dict)
    entry: dict[str, Any] | None = None
    lease: Lease | None = None
    persona: str | None = None
    ports: list[int] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    workspace: Workspace | None = None

    @property
    def flow(self) -> Flow:
        return self.item.flow


class RunsetRun:
    """One run-set file's run: its directory, journal and flow entries."""

    def __init__(
        self,
        runset: RunSet,
        directory: RunDirectory,
        base_url: str | None,
        previous: dict[str, dict[str, Any]] | None = None,
        started_at: float | None = None,
    ) -> None:
        self.runset = runset
        self.directory = directory
        self.base_url = base_url
        # Final entries of flows an earlier session of this run already finished (resume).
        self.previous = previous or {}
        self.started_at = started_at
        self.entries: dict[str, dict[str, Any]] = {}
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
        self.report: dict[str, Any] | None = None

    @property
    def run_dir(self) -> str:
        return str(self.directory.path)

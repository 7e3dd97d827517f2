"""What crosses the channel between the controller and a worker gateway, typed.

Every message is a ``(kind, data)`` tuple of builtins (execnet serializes only those), so the
types here are ``TypedDict``\\ s: still plain dicts on the wire, checked by mypy on both sides.
Stdlib only, like the rest of the gateway side.

Controller -> worker (after the initial :class:`GatewayInit`):

- ``("run", AttemptSpec)``: run one flow attempt (only when the worker is idle);
- ``("cancel", CancelRequest)``: stop the running attempt, ending it with ``status``;
- ``("stop", {})``: abandon whatever runs and leave.

Worker -> controller:

- ``("ready", ProbeInfo)``: the gateway is up (versions, host, scratch dir for remote hosts);
- ``("started", StartedEvent)``: the attempt's runner started;
- ``("file", FileChunk)``: a piece of a remote flow's file, in order, before ``finished``;
- ``("finished", AttemptResult)``: the attempt ended (however it ended).

The pool adds its own kinds for the loop (``"spawn_failed"``, ``"died"``, ``"refused"``) and
the loop its ``"synced"`` (see :class:`pytest_runset.engine.pool.Event`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast

# The statuses a runner or the controller gives one attempt.
AttemptStatus = Literal[
    "passed", "failed", "error", "timeout", "skipped", "xfailed", "interrupted", "not_run"
]
# The statuses a cancelled attempt ends with (``interrupted`` unless the controller says).
CancelStatus = Literal["timeout", "error", "interrupted"]
WorkerMessageKind = Literal["ready", "started", "file", "finished", "swept"]
ControllerMessageKind = Literal["run", "cancel", "stop", "pause", "unpause"]
# How a flow attempt's processes were kept together (docs/reliability.md).
ContainmentTier = Literal["cgroup", "process-group"]
ContainmentRequest = Literal["auto", "cgroup", "process-group"]


class GatewayInit(TypedDict, total=False):
    """The first message a new gateway receives."""

    sys_path: list[str]
    # A remote host: the worker makes a scratch directory for the flows' files.
    remote: bool


class ProbeInfo(TypedDict, total=False):
    """``ready``: what the controller checks before it sends flows."""

    pid: int
    host: str
    python: str
    version: str
    playwright: str | None
    scratch: str


class HostPorts(TypedDict):
    """Ports a remote flow holds on its own host, and the controller's marker file name."""

    ports: list[int]
    marker: str


class Transfer(TypedDict):
    """How a remote flow's files come back: path pairs to map, the host, the size cap."""

    map_back: list[list[str]]
    host: str
    max_bytes: int


class SidecarSpec(TypedDict):
    """A flow's sidecar process, started before the flow and stopped after it."""

    command: list[str] | str
    shell: bool
    cwd: str
    env: dict[str, str]
    ready: str | None
    ready_timeout_s: float
    ready_log: str | None
    kill_grace_s: float
    log_path: str


class ContainmentSpec(TypedDict):
    """How the worker contains an attempt: the tier asked for and the limits."""

    tier: ContainmentRequest
    # Names the run's group (run id and run directories: unique per session).
    group: str
    # The run's cookie file on the controller's host (None for a remote gateway).
    cookie_file: str | None
    memory_max: int | None
    pids_max: int | None


class Resources(TypedDict):
    """What an attempt's whole process tree used."""

    cpu_s: float
    peak_memory_bytes: int | None


class ViewportSize(TypedDict):
    width: int
    height: int


class BrowserLaunch(TypedDict, total=False):
    """Options of the browser's launch (Playwright's names); a change needs a new browser."""

    channel: str
    headless: bool
    slow_mo: float
    args: list[str]


class HttpCredentials(TypedDict):
    username: str
    password: str


class ContextOptions(TypedDict, total=False):
    """Options of each flow's new browser context (Playwright's keyword names); ``device``
    is a Playwright device name whose descriptor the worker spreads in first."""

    device: str
    viewport: ViewportSize
    locale: str
    timezone_id: str
    color_scheme: str
    geolocation: dict[str, float]
    permissions: list[str]
    extra_http_headers: dict[str, str]
    http_credentials: HttpCredentials
    ignore_https_errors: bool
    user_agent: str


class LoginSpec(TypedDict, total=False):
    """A persona's sign-in, done once per run and host; its storage state is shared by the
    persona's browser flows (see :mod:`pytest_runset.gateway.runners.persona_login`)."""

    persona: str
    # The run's private auth directory on the controller's host (mapped for remote hosts).
    dir: str
    # Renew the storage state once it is older than this (None: it lasts the run).
    ttl_s: float | None
    steps: list[dict[str, Any]]
    callable: str | None
    params: list[str] | None
    base_url: str | None


class BrowserSpec(TypedDict, total=False):
    """A browser flow's browser: which one, how it is launched, the context's options, the
    artifacts to keep, and the persona's sign-in."""

    name: str
    executable: str | None
    headed: bool
    trace: str
    screenshot: str
    video: str
    isolation: str
    endpoint: str | None
    viewport: list[int] | None
    cookie: str
    launch: BrowserLaunch
    context: ContextOptions
    login: LoginSpec


class AttemptSpec(TypedDict, total=False):
    """``run``: one attempt of one flow, every value filled in by the controller.

    The keys every kind has are listed first; steps and callable flows add the in-process
    part, remote flows the transfer and host ports.
    """

    flow_id: str  # the attempt's cookie: RUNSET_FLOW_ID of every process it starts
    kind: str  # "command", "steps" or "callable"
    name: str
    slug: str
    attempt: int
    command: list[str] | str | None
    shell: bool
    cwd: str
    env: dict[str, str]
    env_unset: list[str]
    flow_dir: str
    run_dir: str
    report_path: str
    timeout_s: float
    kill_grace_s: float
    secrets: list[str]
    ports: list[int]
    persona: dict[str, Any] | None
    sidecar: SidecarSpec
    containment: ContainmentSpec
    # Steps and callable flows.
    steps: list[dict[str, Any]]
    callable: str | None
    params: list[str] | None
    root: str
    base_url: str | None
    browser: BrowserSpec | None
    # Remote flows.
    transfer: Transfer
    host_ports: HostPorts


class CancelRequest(TypedDict, total=False):
    """``cancel``: why the attempt stops, and the status it ends with (default interrupted)."""

    reason: str
    status: CancelStatus


class StartedEvent(TypedDict):
    flow_id: str
    started_at: float


class FileChunk(TypedDict):
    """``file``: up to 1 MiB of one file; ``first`` starts the file anew."""

    name: str
    data: bytes
    first: bool


class StepTiming(TypedDict):
    """One step of a steps flow's attempt, in order: its label and wall time in seconds
    (``None``: the step never started)."""

    label: str
    duration_s: float | None


class AttemptResult(TypedDict, total=False):
    """``finished``: how one attempt ended. Also what the controller records for an attempt
    that never reached a worker (``local_result``), so both are read alike."""

    attempt: int
    status: AttemptStatus
    exit_code: int | None
    message: str
    # A browser step's full Playwright message, or a callable's traceback.
    details: str
    # A steps flow's steps with their durations, and the 0-based index of the step that failed.
    steps: list[StepTiming]
    failed_step: int
    metrics: dict[str, Any]
    artifacts: list[str]
    warnings: list[str]
    leftover_processes: int
    flow_id: str
    started_at: float
    duration_s: float
    dir: str | None
    worker: str
    logs: dict[str, str]
    result: Any
    stderr_tail: str
    tail_source: str
    skipped_artifacts: list[str]
    # A browser flow's browser: name, version, executable, launched or warm, ...
    browser: dict[str, Any]
    # Which tier contained the attempt, what it used, whether its limits held.
    containment: ContainmentTier
    resources: Resources
    limits_enforced: bool
    # Seconds the attempt spent frozen by a pause (``pytest-runset pause``, Ctrl-Z).
    paused_s: float
    # The worker can no longer be trusted with flows (a flow's code is stuck inside it).
    retire: bool
    # Set by the controller: the run's global deadline ended (or prevented) this attempt.
    ended_by: Literal["global_timeout", "service", "interrupt"]


def finished_result(data: Mapping[str, Any]) -> AttemptResult:
    """The :class:`AttemptResult` of a ``finished`` message (a copy the caller may change)."""
    return cast(AttemptResult, dict(data))

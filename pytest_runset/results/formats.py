"""What a run writes to disk, typed: the lines of ``journal.jsonl`` and ``report.json``.

These are ``TypedDict``\\ s: plain dicts at runtime, so each file is exactly what ``json.dumps``
makes of them, and mypy checks every place that builds or reads one. Field names and values
are public (docs/reports.md, docs/cli.md): change them only with the report's schema.
Stdlib and typing only.

``report.json`` (:class:`RunReport`, schema ``pytest-runset/report@1``), written once at the
end of a run (``results/report.py`` ``build_report``) or by ``pytest-runset merge``
(``results/merge.py``)::

    {"schema", "run_id", "runset": RunsetInfo, "status": RunStatus, "started_at",
     "finished_at", "wall_s", "workers", "flows": [FlowEntry, ...], "summary": Summary,
     "shard": ShardInfo (with --runset-shard), "merged_from": [MergedShard, ...] (merged),
     "groups": [Grouping, ...] (flows with a matrix or tags)}

``journal.jsonl``: one :data:`JournalLine` per line, appended and fsynced as the run goes:

- :class:`StartLine`, ``{"event": "start", ...}``: a run's first line, what a resume checks;
- :class:`ResumeLine`, ``{"event": "resume", "at": ...}``: a later session continues the run;
- :class:`FlowLine`, ``{"event": "flow", **FlowEntry}``: a flow's final entry, once per flow;
- :class:`ReportLine`, ``{"event": "report", "finished_at": ...}``: ``report.json`` is written.

What is read back (a resume reads the journal, a merge and the CLI read reports) may come from
another version or be damaged: readers check what they rely on before they take a value for
one of these types.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# Every status a flow can end with, in the order summaries and pages list them (``STATUSES``).
FlowStatus = Literal[
    "passed",
    "failed",
    "error",
    "timeout",
    "skipped",
    "xfailed",
    "xpassed",
    "interrupted",
    "not_run",
]
# The status of a whole run (``run_status`` in results/report.py).
RunStatus = Literal["passed", "failed", "interrupted", "incomplete"]


class RunsetRef(TypedDict):
    """Which run-set a run ran: the journal's ``start`` line names it so."""

    name: str
    # Of the run-set file's bytes: a resume notices a file changed since the run started.
    sha256: str


class RunsetInfo(RunsetRef):
    """``runset`` of a report: the run-set's name, sha256 and file."""

    # The run-set file's absolute path.
    file: str


class FlowLogs(TypedDict, total=False):
    """A flow's logs (``<dir>/stdout.log``, ``<dir>/stderr.log``); ``{}`` if it never started."""

    stdout: str
    stderr: str


class HistoryItem(TypedDict):
    """One attempt of a flow, in its entry's ``history`` (every attempt, in order)."""

    attempt: int
    # The attempt's own status (never ``xpassed``: xfail marks apply to the flow).
    status: FlowStatus
    # The attempt's directory (``<slug>`` or ``<slug>-retryN``); ``None`` if it ran nowhere.
    dir: str | None
    duration_s: float | None
    exit_code: int | None
    message: str
    # From the run's start to the attempt's start, and its worker (absent in reports of older
    # releases): the HTML timeline draws every attempt.
    started_s: NotRequired[float | None]
    worker: NotRequired[str | None]
    # The attempt's own ``$RUNSET_REPORT`` metrics (absent in reports of older releases).
    metrics: NotRequired[dict[str, Any]]


class StepRecord(TypedDict):
    """One step of a steps flow's last attempt: its label and wall time (``None``: the step
    never started)."""

    label: str
    duration_s: float | None


class FlowResources(TypedDict):
    """What a flow's whole process tree used in its last attempt (cgroup accounting, or the
    ``getrusage`` of the reaped tree; ``peak_memory_bytes`` is None where unknown)."""

    cpu_s: float
    peak_memory_bytes: int | None


class FlowEntry(TypedDict):
    """One flow of ``report.json``'s ``flows``; also a ``flow`` line of the journal, and what
    the ``pytest_runset_flow_finished`` hook is given.

    Built by ``engine/entries.py`` (``flow_entry`` for a flow that ran, ``unstarted_entry`` for
    one that never started). Paths are relative to the run directory (to the merged report's
    directory in a merged report).
    """

    name: str
    slug: str
    nodeid: str
    kind: Literal["command", "steps", "callable"]
    status: FlowStatus
    # 0 for a flow that never started.
    attempts: int
    # Passed on a retry after a failed attempt.
    flaky: bool
    # The flow's 0-based position in the run-set file (a merge orders flows by it).
    index: int
    # Of the last attempt.
    duration_s: float
    # From the run's start to the start of the last attempt; ``None`` if the flow never started.
    started_s: float | None
    # The worker id (``gw0``...) and slot of the last attempt.
    worker: str | None
    slot: int | None
    exit_code: int | None
    message: str
    # The last attempt's directory.
    dir: str | None
    logs: FlowLogs
    # ``<dir>/result.json``.
    result: str | None
    # ``<dir>/<path>`` of each artifact of the last attempt.
    artifacts: list[str]
    persona: str | None
    ports: list[int]
    tags: list[str]
    leftover_processes: int
    # Of the last attempt (absent in reports of older releases).
    resources: NotRequired[FlowResources]
    # Of the last attempt, when it has them: the full text of its failure (Playwright's message
    # with its call log, a callable's traceback), a steps flow's steps with their durations, and
    # the 0-based index of the step that failed.
    details: NotRequired[str]
    steps: NotRequired[list[StepRecord]]
    failed_step: NotRequired[int]
    # From ``$RUNSET_REPORT``.
    metrics: dict[str, Any]
    # A flow expanded from a ``matrix``: its value on each axis, in axis order.
    matrix: NotRequired[dict[str, MatrixValue]]
    # A browser flow's copy in a ``[[runset.projects]]`` project: the project's name.
    project: NotRequired[str]
    warnings: list[str]
    # Of the flow's table in the run-set file: a resume runs a changed flow again.
    definition_sha256: str
    history: list[HistoryItem]
    # Merged reports only: the 1-based position of the flow's report on the command line.
    shard: NotRequired[int]


class Summary(TypedDict):
    """``summary`` of a report: counts and timings of its flows."""

    total: int
    # One count per status.
    passed: int
    failed: int
    error: int
    timeout: int
    skipped: int
    xfailed: int
    xpassed: int
    interrupted: int
    not_run: int
    # Flows with ``flaky: true`` (also counted in ``passed``).
    flaky: int
    sum_duration_s: float
    # max(longest duration_s, sum_duration_s / workers).
    lower_bound_s: float
    # sum_duration_s / (max(wall_s, 0.001) * workers).
    parallelism_efficiency: float


class ShardInfo(TypedDict):
    """``shard`` of a report of a ``--runset-shard K/N`` session."""

    index: int  # K
    total: int  # N
    balanced_by: Literal["history", "file order"]
    # A fingerprint of the whole split: shards of one split have the same.
    plan: str


class QueueInfo(TypedDict):
    """``queue`` of a report of a ``--runset-queue NAME`` session: the report lists only the
    flows this session ran; ``pytest-runset merge`` of every session's report is the run."""

    name: str
    session: str  # this session's id on the coordinator
    host: str
    role: Literal["seeded", "joined"]
    coordinator: str  # the URL, its password masked
    digest: str  # of the run-sets and the selection: every session of the queue has the same
    total: int  # flows in the queue when it was seeded
    ran: int  # flows this report lists
    pulled: int  # flows (or retries) this session took from the queue
    handed_back: int  # retries and unstarted flows it put back for any session


class MergedShard(TypedDict):
    """One input of a merged report (``merged_from``), in command-line order. The fields after
    ``report`` are as that input says (``None`` where it says nothing)."""

    shard: int  # 1-based position on the command line
    report: str  # its path, relative to the merged report's directory
    run_id: str | None
    status: str | None
    started_at: str
    finished_at: str
    wall_s: float
    workers: int
    flows: int  # how many flows it lists


# A value of a matrix axis (a tag's groups have the tag's name as their value).
MatrixValue = str | int | float | bool


class MetricStats(TypedDict):
    """One numeric metric over a group's flows (the last attempt's ``metrics`` of each)."""

    # Flows with a finite number for it, and flows without (absent, a label, null, ...).
    n: int
    n_missing: int
    # ``None`` where ``n`` is too small: everything at 0, stdev and ci95 below 2.
    mean: float | None
    # The sample standard deviation (n - 1).
    stdev: float | None
    min: float | None
    median: float | None
    max: float | None
    # [low, high]: the 95% confidence interval of the mean (Student's t with n - 1 df).
    ci95: list[float] | None


class GroupStats(TypedDict):
    """The flows that have one value of an axis (or carry one tag)."""

    value: MatrixValue
    n: int
    # Flows per status, every status listed (in the order of ``STATUSES``).
    counts: dict[str, int]
    # passed / (passed + failed + error + timeout); ``None`` when none of those.
    pass_rate: float | None
    # Every metric that is a number in some flow of the report, by name.
    metrics: dict[str, MetricStats]


class Grouping(TypedDict):
    """``groups`` of a report: one per matrix axis (in axis order), then one for tags."""

    # The axis name, or ``"tag"``.
    by: str
    kind: Literal["matrix", "tag"]
    # In the order the values first appear in the report's flows.
    groups: list[GroupStats]


class RunReport(TypedDict):
    """``report.json``: the record of one run (or of merged shard runs)."""

    # Always ``"pytest-runset/report@1"`` (``REPORT_SCHEMA``).
    schema: str
    run_id: str
    runset: RunsetInfo
    status: RunStatus
    # ISO 8601 UTC with milliseconds and ``Z``.
    started_at: str
    finished_at: str
    wall_s: float
    workers: int
    # In run-set file order.
    flows: list[FlowEntry]
    summary: Summary
    # How flows' processes were contained ("cgroup" or "process-group"), whether the
    # memory_max / pids_max limits were enforced, and seconds spent paused.
    containment: NotRequired[str]
    limits_enforced: NotRequired[bool]
    paused_s: NotRequired[float]
    # A session with ``--runset-shard K/N`` only.
    shard: NotRequired[ShardInfo]
    # A session with ``--runset-queue NAME`` only.
    queue: NotRequired[QueueInfo]
    # Merged reports only.
    merged_from: NotRequired[list[MergedShard]]
    # Per matrix axis and per tag (results/groups.py); absent when flows have neither.
    groups: NotRequired[list[Grouping]]


class StartLine(TypedDict):
    """The journal's first line of a run."""

    event: Literal["start"]
    run_id: str
    # Unix time.
    started_at: float
    runset: RunsetRef


class ResumeLine(TypedDict):
    """A later session continues the run (``--runset-resume``)."""

    event: Literal["resume"]
    # Unix time.
    at: float


class FlowLine(FlowEntry):
    """A flow's final entry (``event`` comes first in the line)."""

    event: Literal["flow"]


class ReportLine(TypedDict):
    """The journal's last line: ``report.json`` has been written."""

    event: Literal["report"]
    # ISO 8601 UTC, as in the report.
    finished_at: str


JournalLine = StartLine | ResumeLine | FlowLine | ReportLine

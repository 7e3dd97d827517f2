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
     "shard": ShardInfo (with --runset-shard), "merged_from": [MergedShard, ...] (merged)}

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
    # From ``$RUNSET_REPORT``.
    metrics: dict[str, Any]
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
    # Merged reports only.
    merged_from: NotRequired[list[MergedShard]]


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

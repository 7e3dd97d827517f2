"""Merging shard reports: runs of one run-set split across machines become one report.

Rules (documented in docs/cli.md):

- Every input must be a ``pytest-runset/report@1`` report of the same run-set (same name and
  sha256 of the file) unless forced.
- Flows are listed in run-set file order: by each entry's ``index``, else by the position of its
  slug in the run-set file when that file is still readable and unchanged, else in the order the
  reports list them.
- A flow in several reports: an entry that ran beats one that did not (``not_run``); between
  entries that ran, the one whose last attempt finished later wins. Two entries that ran with
  different statuses are a conflict, reported with both files.
- ``wall_s`` is the longest shard's wall time (shards run side by side, so the slowest one is
  the merged run's duration; clocks of different machines need not agree), ``workers`` the sum,
  ``started_at``/``finished_at`` the earliest start and latest finish. ``summary`` and
  ``status`` are recomputed from the merged flows, and so are ``groups``.
- Paths are rewritten relative to the merged report's directory; each flow gets ``shard`` (its
  report's 1-based position on the command line).

Nothing here imports pytest or pydantic (the run-set file is read only to recover the order).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pytest_runset.results.formats import FlowEntry, RunReport, RunsetInfo
from pytest_runset.results.groups import compute_groups
from pytest_runset.results.report import REPORT_SCHEMA, iso_utc, run_status, summarize
from pytest_runset.results.statuses import STATUSES


class MergeError(Exception):
    """The inputs cannot be merged; ``str()`` is one line naming the file and the problem."""


@dataclass
class Shard:
    """One input report: where it is and what it says (checked by :func:`check_report`, the
    rest as the file has it: any version, any origin)."""

    path: Path
    report: Mapping[str, Any]
    number: int

    @property
    def run_dir(self) -> Path:
        return self.path.parent


@dataclass
class MergeResult:
    # The merged report: set by merge_reports once the flows are merged.
    report: RunReport = field(init=False)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_report(path: Path, data: Mapping[str, Any]) -> None:
    """Raise :class:`MergeError` naming the first field a merge cannot do without."""
    runset = data.get("runset")
    if not isinstance(runset, Mapping) or not isinstance(runset.get("name"), str):
        raise MergeError(f"{path}: field 'runset.name' is missing or not a string")
    for key in ("started_at", "finished_at"):
        if _timestamp(data.get(key)) is None:
            raise MergeError(f"{path}: field {key!r} is missing or not an ISO 8601 time")
    if not _number(data.get("wall_s")):
        raise MergeError(f"{path}: field 'wall_s' is missing or not a number")
    workers = data.get("workers")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise MergeError(f"{path}: field 'workers' is missing or not a whole number")
    flows = data.get("flows")
    if not isinstance(flows, list):
        raise MergeError(f"{path}: field 'flows' is missing or not a list")
    seen: set[str] = set()
    for position, flow in enumerate(flows, start=1):
        where = f"{path}: flow #{position}"
        if not isinstance(flow, Mapping):
            raise MergeError(f"{where}: not an object")
        for key in ("name", "slug", "status"):
            if not isinstance(flow.get(key), str) or not flow.get(key):
                raise MergeError(f"{where}: field {key!r} is missing or not a string")
        if flow["status"] not in STATUSES:
            raise MergeError(f"{where}: unknown status {flow['status']!r}")
        if flow["slug"] in seen:
            raise MergeError(f"{where}: slug {flow['slug']!r} appears twice in this report")
        seen.add(flow["slug"])
        index = flow.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise MergeError(f"{where}: field 'index' is not a whole number")
        for key in ("duration_s", "started_s"):
            if flow.get(key) is not None and not _number(flow[key]):
                raise MergeError(f"{where}: field {key!r} is not a number")
        artifacts = flow.get("artifacts", [])
        if not isinstance(artifacts, list) or not all(isinstance(a, str) for a in artifacts):
            raise MergeError(f"{where}: field 'artifacts' is not a list of paths")


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _same_runset(first: Shard, other: Shard) -> str | None:
    """Why ``other`` is not a report of ``first``'s run-set, or ``None`` when it is."""
    a, b = first.report["runset"], other.report["runset"]
    if a.get("name") != b.get("name"):
        return f"run-set {a.get('name')!r} vs {b.get('name')!r}"
    if a.get("sha256") != b.get("sha256"):
        return f"run-set file sha256 {str(a.get('sha256'))[:12]} vs {str(b.get('sha256'))[:12]}"
    return None


def _finished(shard: Shard, flow: Mapping[str, Any]) -> float:
    """When the flow's last attempt ended (wall clock of its machine); unknown is earliest."""
    started = _timestamp(shard.report.get("started_at")) or 0.0
    offset = flow.get("started_s")
    duration = flow.get("duration_s")
    if not _number(offset):
        return float("-inf")
    return started + float(offset) + (float(duration) if _number(duration) else 0.0)  # type: ignore[arg-type]


def _ran(flow: Mapping[str, Any]) -> bool:
    return flow.get("status") != "not_run"


def _rewrite(value: object, shard: Shard, out_dir: Path) -> object:
    """A report path (relative to the shard's run dir) made relative to ``out_dir``."""
    if not isinstance(value, str) or not value:
        return value
    return os.path.relpath(shard.run_dir / value, out_dir).replace(os.sep, "/")


def _rewritten_flow(flow: Mapping[str, Any], shard: Shard, out_dir: Path) -> FlowEntry:
    entry = dict(flow)
    entry["shard"] = shard.number
    for key in ("dir", "result"):
        if key in entry:
            entry[key] = _rewrite(entry[key], shard, out_dir)
    if isinstance(entry.get("logs"), Mapping):
        entry["logs"] = {k: _rewrite(v, shard, out_dir) for k, v in entry["logs"].items()}
    if isinstance(entry.get("artifacts"), list):
        entry["artifacts"] = [_rewrite(a, shard, out_dir) for a in entry["artifacts"]]
    if isinstance(entry.get("history"), list):
        entry["history"] = [
            {**h, "dir": _rewrite(h.get("dir"), shard, out_dir)} if isinstance(h, Mapping) else h
            for h in entry["history"]
        ]
    # A flow of a shard's report: check_report checked name, slug, status and index; the rest
    # is as that report wrote it.
    return cast(FlowEntry, entry)


def _file_order(shards: list[Shard]) -> dict[str, int] | None:
    """Slug -> position in the run-set file, when that file is readable and unchanged."""
    runset = shards[0].report["runset"]
    file, sha = runset.get("file"), runset.get("sha256")
    if not isinstance(file, str) or not isinstance(sha, str):
        return None
    try:
        if hashlib.sha256(Path(file).read_bytes()).hexdigest() != sha:
            return None
        from pytest_runset.model.flows import RunsetError
        from pytest_runset.model.loader import load_runset  # pydantic, only for old reports

        loaded = load_runset(file)
    except (OSError, ImportError, RunsetError):
        return None
    return {flow.slug: flow.index for flow in loaded.flows}


def merge_reports(shards: list[Shard], out_path: Path, *, force: bool = False) -> MergeResult:
    """The merged report of ``shards`` (checked with :func:`check_report`), for ``out_path``."""
    if not shards:
        raise MergeError("no reports to merge")
    first = shards[0]
    for shard in shards[1:]:
        problem = _same_runset(first, shard)
        if problem and not force:
            raise MergeError(
                f"{first.path} and {shard.path} are reports of different run-sets ({problem}); "
                "use --force to merge them anyway"
            )
    result = MergeResult()
    _check_plans(shards, result)
    out_dir = out_path.parent
    chosen: dict[str, tuple[Shard, Mapping[str, Any]]] = {}
    appearance: dict[str, int] = {}
    for shard in shards:
        for flow in shard.report["flows"]:
            slug = flow["slug"]
            appearance.setdefault(slug, len(appearance))
            if slug not in chosen:
                chosen[slug] = (shard, flow)
                continue
            old_shard, old = chosen[slug]
            if _ran(old) and _ran(flow) and old["status"] != flow["status"]:
                result.conflicts.append(
                    f"conflict: flow {flow['name']!r} ({slug}) is {old['status']} in "
                    f"{old_shard.path} but {flow['status']} in {shard.path}; "
                    "keeping the later finished result"
                )
            if (_ran(flow), _finished(shard, flow)) > (_ran(old), _finished(old_shard, old)):
                chosen[slug] = (shard, flow)
    order = _order(shards, chosen, appearance, result)
    flows = [_rewritten_flow(chosen[slug][1], chosen[slug][0], out_dir) for slug in order]
    result.report = _merged_report(shards, flows, out_dir)
    # Recomputed from the merged flows: statistics of shards do not add up.
    groups = compute_groups(flows)
    if groups:
        result.report["groups"] = groups
    return result


def _check_plans(shards: list[Shard], result: MergeResult) -> None:
    """Shards of one split agree on N and on the plan; a missing shard is noted."""
    planned = [
        (shard, shard.report["shard"])
        for shard in shards
        if isinstance(shard.report.get("shard"), Mapping)
    ]
    if not planned:
        return
    first, info = planned[0]
    for shard, other in planned[1:]:
        if (other.get("total"), other.get("plan")) != (info.get("total"), info.get("plan")):
            result.conflicts.append(
                f"conflict: {first.path} (shard {info.get('index')}/{info.get('total')}) and "
                f"{shard.path} (shard {other.get('index')}/{other.get('total')}) were split by "
                "different plans (different flows selected, or different duration histories): "
                "flows may be missing or run twice"
            )
    total = info.get("total")
    if isinstance(total, int) and len(planned) == len(shards):
        missing = sorted(set(range(1, total + 1)) - {other.get("index") for _, other in planned})
        if missing:
            result.notes.append(
                f"note: shard{'s' if len(missing) > 1 else ''} "
                f"{', '.join(f'{k}/{total}' for k in missing)} not given: their flows are missing"
            )


def _order(
    shards: list[Shard],
    chosen: Mapping[str, tuple[Shard, Mapping[str, Any]]],
    appearance: Mapping[str, int],
    result: MergeResult,
) -> list[str]:
    indexes = {slug: flow.get("index") for slug, (_, flow) in chosen.items()}
    if all(isinstance(index, int) for index in indexes.values()):
        return sorted(chosen, key=lambda slug: (indexes[slug], slug))
    positions = _file_order(shards)
    if positions is not None and all(slug in positions for slug in chosen):
        return sorted(chosen, key=lambda slug: (positions[slug], slug))
    result.notes.append(
        "note: flows have no 'index' and the run-set file is not readable unchanged; "
        "flows are in the order the reports list them"
    )
    return sorted(chosen, key=appearance.__getitem__)


def _merged_report(shards: list[Shard], flows: list[FlowEntry], out_dir: Path) -> RunReport:
    reports = [shard.report for shard in shards]
    started = min(_timestamp(r["started_at"]) or 0.0 for r in reports)
    finished = max(_timestamp(r["finished_at"]) or 0.0 for r in reports)
    wall = max(float(r["wall_s"]) for r in reports)
    workers = sum(int(r["workers"]) for r in reports)
    interrupted = any(r.get("status") == "interrupted" for r in reports)
    run_ids = [str(r.get("run_id", "?")) for r in reports]
    # The first report's, as it wrote it (check_report checked its name).
    runset = cast(RunsetInfo, dict(reports[0]["runset"]))
    return {
        "schema": REPORT_SCHEMA,
        "run_id": "+".join(dict.fromkeys(run_ids)),
        "runset": runset,
        "status": run_status(flows, interrupted),
        "started_at": iso_utc(started),
        "finished_at": iso_utc(finished),
        "wall_s": round(wall, 6),
        "workers": workers,
        "flows": flows,
        "summary": summarize(flows, wall, workers),
        "merged_from": [
            {
                "shard": shard.number,
                "report": os.path.relpath(shard.path, out_dir).replace(os.sep, "/"),
                "run_id": shard.report.get("run_id"),
                "status": shard.report.get("status"),
                # Every report has these four (they were read above).
                "started_at": shard.report["started_at"],
                "finished_at": shard.report["finished_at"],
                "wall_s": shard.report["wall_s"],
                "workers": shard.report["workers"],
                "flows": len(shard.report["flows"]),
            }
            for shard in shards
        ],
    }

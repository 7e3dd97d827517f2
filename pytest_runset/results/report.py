"""Run directories, the crash-safe journal, ``report.json`` and the ``report.html`` beside it.

Durability order: a finished flow is appended to ``journal.jsonl`` and fsynced before pytest
hears about it, so a crash at any later point loses nothing that was reported. ``report.json``
is written once at the end (temp file + rename), never rewritten per flow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import filelock

from pytest_runset.model.fsnames import os_name
from pytest_runset.results.formats import (
    FlowEntry,
    JournalLine,
    RunReport,
    RunsetInfo,
    RunStatus,
    ShardInfo,
    Summary,
)
from pytest_runset.results.groups import compute_groups
from pytest_runset.results.html import html_path_for, write_html
from pytest_runset.results.jsonfile import json_bytes, strict_json, write_json_atomic

# Re-exported (explicit ``as`` for mypy) for modules that still import them from here; new
# code imports them from pytest_runset.results.statuses.
from pytest_runset.results.statuses import FAILING_STATUSES, STATUSES
from pytest_runset.results.storage import StorageError, deleted_error, storage_error

REPORT_SCHEMA = "pytest-runset/report@1"
JOURNAL_NAME = "journal.jsonl"
REPORT_NAME = "report.json"
LOCK_NAME = "run.lock"
LATEST_NAME = "latest"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunDirError(Exception):
    """The run directory cannot be used (bad id, busy, not writable); one-line message."""


def new_run_id(now: dt.datetime | None = None) -> str:
    """``20261122T063501Z-3fa2``: sortable UTC time plus a short random suffix."""
    moment = now or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id) or run_id in (LATEST_NAME,):
        raise RunDirError(
            f"--runset-run-id {run_id!r}: use letters, digits, '.', '_' and '-' "
            "(at most 128, not starting with a separator)"
        )
    return run_id


def iso_utc(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def point_latest(output_root: Path, run_id: str) -> None:
    """Make ``<output>/latest`` point at ``run_id`` (relative symlink, swapped atomically).

    Raises ``OSError`` when neither a link nor a plain file can be written; no temporary
    link is left behind.
    """
    link = output_root / LATEST_NAME
    tmp = output_root / f".{LATEST_NAME}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(run_id, tmp)
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if link.is_dir() and not link.is_symlink():
            return  # a directory of the user's called "latest": left alone
        # Filesystems without symlinks: a plain file naming the run still helps humans.
        link.unlink(missing_ok=True)
        link.write_text(run_id + "\n", encoding="utf-8")


class RunDirectory:
    """``<output>/<run_id>/``: created, locked against a second session, journaled."""

    def __init__(self, output_root: Path, run_id: str) -> None:
        # A run-set's ``output = "résultats"`` must work under a C locale too.
        self.output_root = Path(os_name(output_root))
        self.run_id = check_run_id(run_id)
        self.path = self.output_root / run_id
        self.journal_path = self.path / JOURNAL_NAME
        self._lock: filelock.BaseFileLock | None = None
        self._fd: int | None = None
        self._unsynced = False
        # The first storage error: from then on the journal takes no more lines (an fsync that
        # failed once may report success the next time, with the data lost).
        self.failed: StorageError | None = None

    def open(self, *, resume: bool = False) -> None:
        """Create (or, with ``resume``, reopen) the run directory and take its lock."""
        try:
            self.output_root.mkdir(parents=True, exist_ok=True)
            if resume and not (self.path / JOURNAL_NAME).is_file():
                raise RunDirError(
                    f"--runset-resume {self.run_id}: no run with a journal at {self.path}"
                )
            # The owner's only: nobody else may plant files or links in a run, read what a
            # flow printed, or reach the live-control channel (control/).
            self.path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise RunDirError(
                f"cannot create run directory {self.path}: {exc.strerror or exc}"
            ) from None
        if self.path.is_symlink() or not self.path.is_dir():
            raise RunDirError(f"run directory {self.path} is not a plain directory")
        lock = filelock.FileLock(str(self.path / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise RunDirError(
                f"run {self.run_id!r} is in use by another pytest session "
                f"(lock {self.path / LOCK_NAME}); choose another --runset-run-id"
            ) from None
        except OSError as exc:
            raise RunDirError(
                f"cannot lock {self.path / LOCK_NAME}: {exc.strerror or exc}"
            ) from None
        if not resume and (
            (self.path / JOURNAL_NAME).exists() or (self.path / REPORT_NAME).exists()
        ):
            lock.release()
            raise RunDirError(
                f"run {self.run_id!r} already exists in {self.output_root}; "
                "choose another --runset-run-id (its results are kept as they are)"
            )
        self._lock = lock
        try:
            self._fd = os.open(
                self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            if resume and os.fstat(self._fd).st_size > 0 and not _ends_with_newline(self._fd):
                # A torn last line (an older controller died mid-write) stays apart, ignored.
                os.write(self._fd, b"\n")
        except OSError as exc:
            self.close()
            raise RunDirError(f"cannot write {self.journal_path}: {exc.strerror}") from None

    def journal(self, entry: JournalLine, *, sync: bool = True) -> None:
        """Append one line and make it durable before returning.

        With ``sync=False`` the line is written but not yet durable: the caller must call
        :meth:`sync` before anyone hears of it. That lets the run loop make several flows
        durable with one fsync (a group commit) when they finish together.

        A line is in the journal whole or not at all: it goes out in one ``write``, and when
        the disk takes only part of it (full, over quota) the journal is cut back to where it
        was. Any failure raises :class:`StorageError`, and so does every later call.
        """
        self._append(json_bytes(strict_json(entry, default=str) + "\n"))
        if sync:
            self.sync(force=True)
        else:
            self._unsynced = True

    def _append(self, data: bytes) -> None:
        fd = self._usable_fd()
        try:
            before = os.fstat(fd).st_size
        except OSError as exc:
            raise self._failure(exc) from None
        written = 0
        try:
            while written < len(data):
                # A short count means the disk filled up mid-line: the next write says why.
                written += os.write(fd, data[written:])
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise self._failure(exc) from None

    def sync(self, *, force: bool = False) -> None:
        """Make every line written so far durable (one fsync, only if something is pending;
        ``force`` for a syncing thread, which cannot trust the flag the writer sets).

        Raises :class:`StorageError` when the fsync fails, or when the journal was deleted
        (its run directory removed under the run): lines written there would be lost.
        """
        if not (self._unsynced or force) or self._fd is None:
            return
        fd = self._usable_fd()
        self._unsynced = False
        try:
            os.fsync(fd)
            deleted = os.fstat(fd).st_nlink == 0
        except OSError as exc:
            raise self._failure(exc) from None
        if deleted:
            self.failed = deleted_error(self.journal_path, journal=self.journal_path)
            raise self.failed

    def _usable_fd(self) -> int:
        if self.failed is not None:
            raise self.failed
        if self._fd is None:
            raise self._failure(OSError(errno.EBADF, "the journal is closed"))
        return self._fd

    def _failure(self, exc: OSError, path: Path | None = None) -> StorageError:
        """Remember the first storage error (later calls raise it again) and return it."""
        error = storage_error(path or self.journal_path, exc, journal=self.journal_path)
        if self.failed is None:
            self.failed = error
        return error

    def write_report(self, report: Mapping[str, Any]) -> Path:
        """Write ``report.json``, then ``report.html`` beside it, then point ``latest`` here.

        Raises :class:`StorageError` (leaving no temporary file) when the disk refuses
        ``report.json`` or ``latest``; the page only costs itself (see write_html_beside).
        """
        target = self.path / REPORT_NAME
        try:
            write_json_atomic(target, report)
        except OSError as exc:
            raise self._failure(exc, target) from None
        write_html_beside(report, target)
        try:
            point_latest(self.output_root, self.run_id)
        except OSError as exc:
            raise self._failure(exc, self.output_root / LATEST_NAME) from None
        return target

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def write_html_beside(report: Mapping[str, Any], report_path: Path) -> Path | None:
    """``report.html`` next to ``report_path``; a page that cannot be written costs only itself.

    The JSON report is the record of the run, so a problem with the page (full disk, a report
    field the renderer chokes on) is one line on stderr, never a lost ``report.json``.
    """
    try:
        return write_html(report, report_path.parent, html_path_for(report_path))
    except Exception as exc:  # see the docstring
        print(f"pytest-runset: cannot write {html_path_for(report_path)}: {exc}", file=sys.stderr)
        return None


def _ends_with_newline(fd: int) -> bool:
    return os.pread(fd, 1, os.fstat(fd).st_size - 1) == b"\n"


def read_journal(path: Path) -> tuple[list[Mapping[str, Any]], int]:
    """The events of a journal and how many lines were unreadable (a torn last line, say).

    Raises :class:`RunDirError` when the journal exists but cannot be read.

    Each event is a JSON object, its fields unchecked (a journal may come from another version,
    or be damaged): the caller checks what it uses (see formats.JournalLine).
    """
    events: list[Mapping[str, Any]] = []
    bad = 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return events, 0
    except OSError as exc:
        # An I/O error must not pass for "nothing finished": a resume would run it all again.
        raise RunDirError(f"cannot read {path}: {exc.strerror or exc}") from None
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            bad += 1
            continue
        if isinstance(event, dict):
            events.append(event)
        else:
            bad += 1
    return events, bad


def lock_is_free(run_dir: Path) -> bool:
    """Whether no live session holds the run's lock (a dead controller's lock is free)."""
    lock = filelock.FileLock(str(run_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except (filelock.Timeout, OSError):
        return False
    lock.release()
    return True


def unfinished_runs(output_root: Path) -> list[str]:
    """Run ids under ``output_root`` that have a journal, no report and nobody running them."""
    found: list[str] = []
    try:
        candidates = sorted(output_root.iterdir())
    except OSError:
        return found
    for run_dir in candidates:
        if run_dir.is_symlink() or not run_dir.is_dir():
            continue
        journal = run_dir / JOURNAL_NAME
        if journal.is_file() and not (run_dir / REPORT_NAME).exists() and lock_is_free(run_dir):
            found.append(run_dir.name)
    return found


def _finished_cleanly(run_dir: Path) -> bool:
    try:
        report = json.loads((run_dir / REPORT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and report.get("status") == "passed"


def newest_run(output_root: Path) -> str | None:
    """The run ``--runset-resume last`` means: the newest one with something left to do.

    Runs are ordered by when their journal last changed; a run whose report says ``passed``
    has nothing to resume and is passed over.
    """
    candidates: list[tuple[float, str]] = []
    try:
        entries = list(output_root.iterdir())
    except OSError:
        return None
    for run_dir in entries:
        journal = run_dir / JOURNAL_NAME
        try:
            if run_dir.is_symlink() or not journal.is_file():
                continue
            candidates.append((journal.stat().st_mtime, run_dir.name))
        except OSError:
            continue  # deleted meanwhile, or unreadable: not a run to resume
    for _, run_id in sorted(candidates, reverse=True):
        if not _finished_cleanly(output_root / run_id):
            return run_id
    return None


def summarize(flows: Iterable[Mapping[str, Any]], wall_s: float, workers: int) -> Summary:
    """The report's ``summary`` of ``flows`` (each status one of ``STATUSES``)."""
    entries = list(flows)
    counts = {status: 0 for status in STATUSES}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    durations = [float(entry.get("duration_s") or 0.0) for entry in entries]
    total_time = sum(durations)
    workers = max(1, workers)
    lower_bound = max([*durations, total_time / workers]) if durations else 0.0
    return {
        "total": len(entries),
        # In the order of STATUSES.
        "passed": counts["passed"],
        "failed": counts["failed"],
        "error": counts["error"],
        "timeout": counts["timeout"],
        "skipped": counts["skipped"],
        "xfailed": counts["xfailed"],
        "xpassed": counts["xpassed"],
        "interrupted": counts["interrupted"],
        "not_run": counts["not_run"],
        "flaky": sum(1 for entry in entries if entry.get("flaky")),
        "sum_duration_s": round(total_time, 6),
        "lower_bound_s": round(lower_bound, 6),
        "parallelism_efficiency": round(total_time / (max(wall_s, 0.001) * workers), 6),
    }


def run_status(flows: Iterable[Mapping[str, Any]], interrupted: bool) -> RunStatus:
    statuses = [entry["status"] for entry in flows]
    if interrupted or "interrupted" in statuses:
        return "interrupted"
    if any(status in FAILING_STATUSES for status in statuses):
        return "failed"
    if "not_run" in statuses:
        return "incomplete"
    return "passed"


def build_report(
    *,
    run_id: str,
    runset: RunsetInfo,
    flows: list[FlowEntry],
    started_at: float,
    finished_at: float,
    workers: int,
    interrupted: bool,
    shard: ShardInfo | None = None,
) -> RunReport:
    wall = max(0.0, finished_at - started_at)
    report: RunReport = {
        "schema": REPORT_SCHEMA,
        "run_id": run_id,
        "runset": runset.copy(),
        "status": run_status(flows, interrupted),
        "started_at": iso_utc(started_at),
        "finished_at": iso_utc(finished_at),
        "wall_s": round(wall, 6),
        "workers": workers,
        "flows": flows,
        "summary": summarize(flows, wall, workers),
    }
    if shard:
        report["shard"] = shard.copy()
    groups = compute_groups(flows)
    if groups:
        report["groups"] = groups
    return report


def monotonic_to_wall(monotonic_value: float) -> float:
    """Convert a ``time.monotonic()`` reading of this process to wall-clock seconds."""
    return time.time() - (time.monotonic() - monotonic_value)

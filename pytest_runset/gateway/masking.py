"""Hiding secrets (persona fields read from ``*_env`` variables) in text and output streams.

Stdlib only: the worker masks a flow's logs and result as they are written, and a browser
flow's ``trace.zip`` before it is kept; the controller masks everything it reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import zipfile
from collections.abc import Mapping, Sequence
from typing import IO, Any, TypeVar, cast
from urllib.parse import quote, quote_plus

from pytest_runset.gateway.flow_dir import attempt_dir

MASK = "***"
_MIN_SECRET = 3  # shorter values would mask ordinary text everywhere and hide nothing real
_CHUNK = 65536
# A zip member this large may need ZIP64 headers (past 2 GiB, compressed or not). Masking never
# makes a member larger (a mask is no longer than any secret), so this leaves ample margin.
_ZIP64_FROM = 1 << 30


def forms(secret: str) -> set[str]:
    """The ways ``secret`` appears in what programs write: as it is, JSON-escaped (a Playwright
    trace stores typed values in JSON; Node escapes like Python's ``json``) and URL-encoded (a
    form post in a trace's network resources: ``password=p%40ss``, spaces as ``+`` or ``%20``)."""
    return {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
        quote_plus(secret, safe=""),
        # Browsers leave "*" alone in form bodies, Python's quote_plus does not.
        quote_plus(secret, safe="*"),
        quote(secret, safe=""),
    }


def usable(secrets: Sequence[str]) -> list[str]:
    """What to mask: every form of every secret worth masking, longest first (a secret
    containing another is masked whole)."""
    found: set[str] = set()
    for secret in secrets:
        if len(secret) >= _MIN_SECRET:
            found |= forms(secret)
    return sorted(found, key=len, reverse=True)


def mask_text(text: str, secrets: Sequence[str]) -> str:
    for secret in usable(secrets):
        text = text.replace(secret, MASK)
    return text


# Fields of an attempt's result that are vocabulary, numbers or the tool's own paths, never a
# flow's text: a secret that happens to read "fail" or "pass" must not rewrite a status.
STRUCTURED_FIELDS = frozenset(
    {
        "attempt",
        "status",
        "ended_by",
        "exit_code",
        "flow_id",
        "started_at",
        "duration_s",
        "leftover_processes",
        "retire",
        "dir",
        "worker",
        "logs",
        "result",
        "artifacts",
        "skipped_artifacts",
        "tail_source",
    }
)


ResultT = TypeVar("ResultT", bound=Mapping[str, Any])


def mask_result(result: ResultT, secrets: Sequence[str]) -> ResultT:
    """An attempt's result with secrets masked in its text only (messages, tails, warnings,
    metrics' strings); :data:`STRUCTURED_FIELDS` are kept as they are."""
    masked = {
        key: value if key in STRUCTURED_FIELDS else mask_data(value, secrets)
        for key, value in result.items()
    }
    # The same keys with values of the same kinds: still the caller's type.
    return cast(ResultT, masked)


def mask_data(data: Any, secrets: Sequence[str]) -> Any:
    """``data`` (JSON-like) with every string masked."""
    if not secrets:
        return data
    if isinstance(data, str):
        return mask_text(data, secrets)
    if isinstance(data, list):
        return [mask_data(item, secrets) for item in data]
    if isinstance(data, dict):
        return {key: mask_data(value, secrets) for key, value in data.items()}
    return data


def copy_masked(
    source: IO[bytes], sink: IO[bytes], secrets: Sequence[str], close: bool = False
) -> None:
    """Stream ``source`` to ``sink`` with secrets replaced, in chunks, never whole in memory.

    The end of each chunk that could be the start of a secret is held back until the next
    chunk shows whether it is, so a secret split across two reads is still caught.
    """
    needles = [s.encode("utf-8") for s in usable(secrets)]
    keep = max((len(n) for n in needles), default=1) - 1
    pending = b""
    while True:
        chunk = source.read1(_CHUNK) if hasattr(source, "read1") else source.read(_CHUNK)
        if not chunk:
            break
        pending += chunk
        for needle in needles:
            pending = pending.replace(needle, MASK.encode())
        cut = len(pending) - keep if keep else len(pending)
        if cut > 0:
            sink.write(pending[:cut])
            sink.flush()
            pending = pending[cut:]
    for needle in needles:
        pending = pending.replace(needle, MASK.encode())
    sink.write(pending)
    sink.flush()
    if close:
        sink.close()
        source.close()


def start_masking_copy(
    source: IO[bytes], sink: IO[bytes], secrets: Sequence[str], close: bool = False
) -> threading.Thread:
    """Copy a flow's output pipe to its log, masked, on a thread of its own."""
    thread = threading.Thread(
        target=_copy_or_drain, args=(source, sink, secrets, close), name="runset-mask", daemon=True
    )
    thread.start()
    return thread


def _copy_or_drain(source: IO[bytes], sink: IO[bytes], secrets: Sequence[str], close: bool) -> None:
    """:func:`copy_masked`; if the log cannot be written (a full disk), the pipe is still read
    to its end, so the flow's writes never block on a pipe nobody empties."""
    try:
        copy_masked(source, sink, secrets, close)
        return
    except (OSError, ValueError):
        pass
    with contextlib.suppress(OSError, ValueError):
        while source.read(_CHUNK):
            pass
    if close:
        for stream in (sink, source):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def mask_file(path: str, secrets: Sequence[str]) -> None:
    """Rewrite a log that was written unfiltered (a sidecar's) with the secrets masked,
    streamed, relative to the attempt's open directory: a link the flow planted at the log is
    neither read nor written through, and the masked copy replaces the log (flow_dir.py).
    A log that cannot be rewritten is left as it is."""
    name = os.path.basename(path)
    try:
        with attempt_dir(os.path.dirname(path)) as directory, directory.open_read(name) as source:
            directory.write(name, lambda sink: copy_masked(source, sink, secrets))
    except OSError:
        pass


def mask_zip(source: str, sink: IO[bytes], secrets: Sequence[str]) -> None:
    """Rewrite the zip archive at ``source`` (a Playwright trace) into ``sink`` with the
    secrets masked in every member, text or binary, one member at a time and each streamed
    (:func:`copy_masked`), so no member is ever whole in memory.

    Raises ``zipfile.BadZipFile`` or ``OSError`` for an archive that cannot be read: the caller
    must then not keep the original.
    """
    with zipfile.ZipFile(source) as reader, zipfile.ZipFile(sink, "w") as writer:
        for info in reader.infolist():
            target = zipfile.ZipInfo(info.filename, info.date_time)
            target.external_attr = info.external_attr
            target.compress_type = (
                info.compress_type
                if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
                else zipfile.ZIP_DEFLATED
            )
            if info.is_dir():
                writer.writestr(target, b"")
                continue
            large = info.file_size >= _ZIP64_FROM
            with reader.open(info) as member, writer.open(target, "w", force_zip64=large) as out:
                copy_masked(member, out, secrets)

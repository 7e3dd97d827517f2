"""Hiding secrets (persona fields read from ``*_env`` variables) in text and output streams.

Stdlib only: the worker masks a flow's logs and result as they are written, the controller
masks everything it reports.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any, TypeVar, cast

MASK = "***"
_MIN_SECRET = 3  # shorter values would mask ordinary text everywhere and hide nothing real


def usable(secrets: Sequence[str]) -> list[str]:
    """Secrets worth masking, longest first (a secret containing another is masked whole)."""
    return sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)


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
        chunk = source.read1(65536) if hasattr(source, "read1") else source.read(65536)
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
    thread = threading.Thread(
        target=copy_masked, args=(source, sink, secrets, close), name="runset-mask", daemon=True
    )
    thread.start()
    return thread

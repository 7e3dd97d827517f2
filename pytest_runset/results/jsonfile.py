"""JSON files the way pytest-runset writes them: readable, written whole or not at all, and
valid UTF-8 whatever the names in them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["json_bytes", "json_chunks", "strict_json", "write_json_atomic"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_chunks(data: Mapping[str, Any]) -> Iterator[str]:
    """JSON for people and programs, in pieces: one top-level key per line, and each element
    of a top-level list (a report's flows) on a line of its own.

    Every piece goes through the C encoder: ``json.dump`` with ``indent`` runs the pure-Python
    encoder, several seconds for a report of 10,000 flows.
    """
    if not data:
        yield "{}\n"
        return
    separator = "{\n"
    for key, value in data.items():
        yield f"{separator}  {strict_json(key)}: "
        separator = ",\n"
        if isinstance(value, list) and value:
            yield "[\n    " + strict_json(value[0])
            for element in value[1:]:
                yield ",\n    " + strict_json(element)
            yield "\n  ]"
        else:
            yield strict_json(value)
    yield "\n}\n"


def strict_json(value: Any, **options: Any) -> str:
    """``json.dumps`` that never writes ``NaN`` or ``Infinity`` (not JSON: strict readers refuse
    the whole file). Such a number is written as ``null``, and an object with a ``warnings``
    list (a flow's entry, a journal line) gets a warning naming where it was."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, **options)
    except ValueError:
        pass
    found: list[str] = []
    cleaned = _finite(value, "", found)
    if found and isinstance(cleaned, dict) and isinstance(cleaned.get("warnings"), list):
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        cleaned["warnings"] = [*cleaned["warnings"], f"not a JSON number, written as null: {shown}"]
    return json.dumps(cleaned, ensure_ascii=False, allow_nan=False, **options)


def _finite(value: Any, where: str, found: list[str]) -> Any:
    """``value`` with each NaN or infinite float replaced by ``None``; ``found`` says where."""
    if isinstance(value, float) and not math.isfinite(value):
        found.append(where or "value")
        return None
    if isinstance(value, dict):
        return {
            key: _finite(item, f"{where}.{key}" if where else str(key), found)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_finite(item, f"{where}[{i}]", found) for i, item in enumerate(value)]
    return value


def json_bytes(text: str) -> bytes:
    """JSON text as UTF-8. A lone surrogate (a file name that is not text under a C locale)
    is written as its ``\\uXXXX`` escape, which any JSON reader turns back into the same string.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text).encode("utf-8")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, rename); raises ``OSError``.

    On failure (a full disk, a deleted directory) the temporary file is removed.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            for chunk in json_chunks(data):
                handle.write(json_bytes(chunk))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

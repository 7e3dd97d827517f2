"""Durations as a run-set file and the command line write them: :func:`parse_duration`.

This module owns the duration syntax (seconds, or ``"90s"``, ``"15m"``, ``"1h30m"``...) and its
upper bound. It is stdlib only and imports nothing else of the package, so every layer (the
schema, step validation, options, workers) can use it without an import cycle.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAX_DURATION_S", "parse_duration"]

# Longest accepted duration. Far beyond any sensible flow, and well below what the waits of the
# stdlib accept (``threading.TIMEOUT_MAX``): a larger value would crash a worker mid-flow.
MAX_DURATION_S = 365 * 86400.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string such as ``"90s"``, ``"15m"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '90s', '15m'")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            # An integer of hundreds of digits: no float holds it, and no duration is that long.
            raise ValueError("too long: a duration is at most 365 days") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = list(_DURATION_PART.finditer(text))
            rebuilt = "".join(p.group(0) for p in parts)
            if not parts or rebuilt.replace(" ", "") != text.replace(" ", ""):
                raise ValueError(
                    f"{value!r} is not a duration (use seconds, or e.g. '90s', '15m', '1h30m')"
                ) from None
            seconds = sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2).lower()] for p in parts)
    else:
        raise ValueError("a duration is a number of seconds or a string like '90s', '15m'")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is too long: a duration is at most 365 days")
    return seconds

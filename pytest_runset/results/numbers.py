"""Numbers read back from a report or a flow's metrics, which a flow or a hand-edited file
may have made anything: booleans, huge integers, ``1e999``."""

from __future__ import annotations

import math


def num(value: object) -> float | None:
    """A finite number of the report, else ``None`` (an integer of hundreds of digits, 1e999
    and ``true`` are not durations or sizes)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None

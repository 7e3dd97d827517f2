"""Memory sizes as people write them: ``"512MiB"``, ``"2GiB"``, ``"100MB"`` or a number of bytes."""

from __future__ import annotations

import re

# Binary units as cgroups and `free -h` count; the decimal ones as disk vendors do.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tib": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
# Below one page no process can run; above 1 PiB is a typo.
_MIN_BYTES = 4096
_MAX_BYTES = 1 << 50


def parse_size(value: object) -> int:
    """Bytes from an int or a string with a unit; ValueError with a one-line reason."""
    if isinstance(value, bool):
        raise ValueError('must be a size such as "512MiB" or a number of bytes')
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS or len(match.group(1)) > 20:
            raise ValueError(f'{value[:40]!r} is not a size: write e.g. "512MiB", "2GiB" or bytes')
        size = int(float(match.group(1)) * _UNITS[unit])
    else:
        raise ValueError('must be a size such as "512MiB" or a number of bytes')
    if not _MIN_BYTES <= size <= _MAX_BYTES:
        raise ValueError(f"must be between 4KiB and 1PiB (got {size} bytes)")
    return size

"""pytest-runset: run many long, isolated flows in parallel as pytest items."""

from __future__ import annotations

__version__ = "0.1.0"

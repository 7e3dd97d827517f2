"""pytest's skip and xfail marks of a flow item, read the way pytest itself reads them.

The one place that touches pytest's private ``_pytest.skipping``: pytest evaluates marks when
it runs an item's setup, but a flow of the plugin's pool never runs pytest's setup, so its
marks are evaluated here with pytest's own functions (conditions, ``reason``, ``strict``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks


@dataclass(frozen=True)
class Xfail:
    """An xfail mark that applies to the item."""

    reason: str
    strict: bool


def skip_reason(item: pytest.Item) -> str | None:
    """Why the item is skipped by a mark, or ``None`` when no skip mark applies."""
    skip = evaluate_skip_marks(item)
    return skip.reason if skip is not None else None


def xfail_mark(item: pytest.Item) -> Xfail | None:
    """The item's applicable xfail mark, or ``None``."""
    xfail = evaluate_xfail_marks(item)
    return Xfail(reason=xfail.reason, strict=xfail.strict) if xfail is not None else None

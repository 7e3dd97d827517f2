"""Running one flow without the run-set pool (inside pytest-xdist workers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .collect import RunsetItem


class FlowFailed(Exception):
    """A flow that did not pass; ``str()`` is the failure text pytest shows."""


def run_single(item: RunsetItem) -> None:
    raise FlowFailed("TODO")

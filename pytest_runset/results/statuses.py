"""The status vocabulary of flows and runs, shared by the report, its page and the merge.

Nothing but constants: every module of the results layer (and anything above it) can import
this without importing the others.
"""

from __future__ import annotations

from typing import get_args

from pytest_runset.results.formats import FlowStatus

# Every status a flow can end with, in the order summaries and pages list them.
STATUSES: tuple[FlowStatus, ...] = get_args(FlowStatus)
# Statuses that make the whole run ``failed``.
FAILING_STATUSES: frozenset[FlowStatus] = frozenset({"failed", "error", "timeout"})

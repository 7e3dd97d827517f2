"""Which flow each of pytest-xdist's items is, as the controller sees them: by node id only.

The controller collects nothing; it hears of items by their node ids (what the workers
collected, which one starts, which worker died in which). An item's name is not always its
flow's slug: a flow's copy in a project is the item ``login[mobile]`` with slug
``login-mobile``, a pytest-repeat copy the item ``login[2-3]`` with slug ``login-2``.
:class:`FlowItems` keeps both names of every flow, as the controller expands the run-sets the
way the workers collect them, so that every collected flow is found and ends with an entry (a
flow an ``-x`` stop or a crashed worker left ``not_run`` included).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pytest_runset.model.flows import Flow

__all__ = ["FlowItems", "FlowKey"]

# A flow of the session: its run-set's resolved path (the key of its run) and its slug.
FlowKey = tuple[str, str]


class FlowItems:
    """The session's flows by (run key, slug) and by node id."""

    def __init__(self, rootpath: Path) -> None:
        # Node ids are relative to the rootdir, in the workers as here.
        self.rootpath = rootpath
        # (run key, slug) -> the flow and, once the workers collected it, its node id.
        self.flows: dict[FlowKey, tuple[Flow, str]] = {}
        # The flows the workers collected (after -k/-m), in their order; None until then.
        self.collected: list[FlowKey] | None = None
        # (run key, item name) -> slug.
        self._slugs: dict[tuple[str, str], str] = {}

    def add(self, run_key: str, flow: Flow, item: str) -> None:
        """A flow of run ``run_key`` whose pytest item is named ``item``."""
        self.flows[(run_key, flow.slug)] = (flow, "")
        self._slugs[(run_key, item)] = flow.slug

    def key(self, nodeid: str) -> FlowKey | None:
        """The flow whose item has this node id; ``None`` for any other item."""
        path, sep, item = nodeid.partition("::")
        if not sep or "::" in item:
            return None
        run_key = str((self.rootpath / path).resolve())
        slug = self._slugs.get((run_key, item))
        return None if slug is None else (run_key, slug)

    def collect(self, ids: Iterable[str]) -> None:
        """The node ids the workers collected (the first worker's list; they all agree)."""
        if self.collected is not None:
            return
        found: list[FlowKey] = []
        for nodeid in ids:
            key = self.key(nodeid)
            if key is not None:
                found.append(key)
                self.flows[key] = (self.flows[key][0], nodeid)
        self.collected = found

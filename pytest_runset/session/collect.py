"""Run-set files as pytest collectors, flows as pytest items."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.model.flows import Flow, RunSet, RunsetError
from pytest_runset.model.loader import load_runset
from pytest_runset.session.flow_fixtures import flow_fixtures
from pytest_runset.session.repeat import repeated
from pytest_runset.session.settings import FLOW_EXECUTOR, LOADED, FlowExecutor

# Spaces and tabs only before the header: ``\s`` would swallow the blank lines above it, and
# the flow would point at the first of them.
_FLOWS_HEADER = re.compile(rb"^[ \t]*\[\[[ \t]*flows[ \t]*\]\]", re.MULTILINE)


class FlowFailed(Exception):
    """A flow that did not pass; ``str()`` is the failure text pytest shows."""


def get_runset(config: pytest.Config, path: Path) -> RunSet:
    """Load (once per session) and cache a run-set file; raises :class:`RunsetError`."""
    cache = config.stash.setdefault(LOADED, {})
    try:
        key = path.resolve()
    except (OSError, RuntimeError):
        # A loop of symbolic links: RuntimeError up to Python 3.12, OSError (ELOOP) after.
        raise RunsetError(
            f"{_shown(config, path)}: cannot read: {os.strerror(errno.ELOOP)}"
        ) from None
    if key not in cache:
        cache[key] = load_runset(key, display=_shown(config, key, fallback=path))
    return cache[key]


def _shown(config: pytest.Config, path: Path, fallback: Path | None = None) -> str:
    """``path`` as the user sees it: relative to where pytest was started, if inside it."""
    try:
        return str(path.relative_to(config.invocation_params.dir))
    except ValueError:
        return str(fallback or path)


def _flow_lines(path: Path) -> list[int]:
    """0-based line of each ``[[flows]]`` header, for report locations and IDE jumps."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    lines: list[int] = []
    line = position = 0
    for match in _FLOWS_HEADER.finditer(data):
        # Counted from the previous header on: linear in the file, even for 10,000 flows.
        line += data.count(b"\n", position, match.start())
        position = match.start()
        lines.append(line)
    return lines


class RunsetFile(pytest.File):
    """A run-set TOML file; each of its flows becomes a :class:`RunsetItem`."""

    def collect(self) -> list[pytest.Item]:
        config = self.config
        try:
            runset = get_runset(config, self.path)
        except RunsetError as exc:
            # This file's collection error, as a Python file with a syntax error is: pytest
            # shows the one line (CollectError has no traceback) and every other file is still
            # collected. A file named with --runset never gets here: it is loaded, and refused
            # with exit 4, in pytest_configure.
            raise self.CollectError(str(exc)) from None
        flows = list(runset.flows)
        replaced = config.hook.pytest_runset_modify_flows(config=config, flows=flows)
        if replaced is not None:
            flows = list(replaced)
        lines = _flow_lines(self.path)
        items: list[pytest.Item] = []
        # pytest-repeat's --count N: N items per flow (session/repeat.py).
        for flow, name in repeated(config, flows):
            position = flow.table_position
            line = lines[position] if position < len(lines) else 0
            item = RunsetItem.from_parent(self, name=name, flow=flow, runset=runset, line=line)
            items.append(item)
        return items


class RunsetItem(pytest.Item):
    """One flow. Run by the run-set pool; :meth:`setup` and :meth:`runtest` run it through
    pytest's own protocol when pytest-runset's loop is not in charge (inside pytest-xdist
    workers)."""

    def __init__(self, *, flow: Flow, runset: RunSet, line: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow = flow
        self.runset = runset
        self._line = line
        # One shared marker object: 10,000 flows would otherwise carry 20,000 more objects
        # through every garbage collection of the session.
        self.add_marker(self.config.stash.setdefault(_RUNSET_MARK, pytest.mark.runset))
        for tag in flow.tags:
            _register_marker(self.config, tag)
            self.add_marker(tag)
        if flow.skip is not None:
            self.add_marker(pytest.mark.skip(reason=flow.skip))
        if flow.xfail is not None:
            self.add_marker(pytest.mark.xfail(reason=flow.xfail))

    def setup(self) -> None:
        # Its fixtures first, as pytest's Function does (its runner tears them down).
        flow_fixtures(self.session).fill(self)
        self._executor().setup(self)

    def runtest(self) -> None:
        self._executor().call(self)

    def _executor(self) -> FlowExecutor:
        """Who runs this flow through pytest's own protocol (the xdist layer puts itself in
        the stash; the plugin's own loop never gets here)."""
        executor = self.config.stash.get(FLOW_EXECUTOR, None)
        if executor is None:
            raise FlowFailed(
                "error: this flow runs in pytest-runset's run loop or in a pytest-xdist worker"
            )
        return executor

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self._line, f"flow {self.flow.name!r}"

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        if isinstance(excinfo.value, FlowFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))


def _register_marker(config: pytest.Config, tag: str) -> None:
    known = config.stash.setdefault(_REGISTERED, set())
    if tag not in known:
        known.add(tag)
        config.addinivalue_line("markers", f"{tag}: run-set tag")


_REGISTERED = pytest.StashKey[set[str]]()
_RUNSET_MARK = pytest.StashKey[pytest.MarkDecorator]()

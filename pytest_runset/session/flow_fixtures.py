"""A flow's fixtures: autouse fixtures and ``usefixtures`` marks run around it, as around a test.

What a flow gets: the autouse fixtures visible from its run-set file (conftest.py files above
it, plugins, the ini option ``usefixtures``) and the fixtures of ``usefixtures`` marks on its
item (added by a hook), with what they request. They run in the process that runs pytest, not
in the flow's worker: their side effects on files, services or databases are what a flow sees.

- Function-scoped (and class-scoped: a flow has no class) fixtures are set up for each flow
  right before it is dispatched and torn down in its teardown phase, once its result is in,
  around all its attempts. Flows overlap, and pytest keeps one cached value per fixture
  definition, so each flow gets its own copy of these definitions.
- Module-scoped fixtures are set up once per run-set file (the flow's "module"; its own copy of
  the definition, seen by pytest as package-scoped because a run-set is no Python module).
- Session- and package-scoped fixtures are the session's own, shared with every test.
- Whatever is not torn down with its flow is torn down when the session's flows are done.

A fixture that fails (or skips) ends the flow before it starts: ``error`` with the fixture's
message (``skipped`` for ``pytest.skip``). A teardown that fails makes the flow's teardown
report an error, as pytest's runner does for a test.

Inside pytest-xdist workers flows run through pytest's own protocol: ``RunsetItem.setup`` fills
the same request (:meth:`FlowFixtures.fill`) and pytest's runner tears it down.

This is the one module that uses pytest's private fixture API (the request of an item, fixture
definitions, the session's ``SetupState``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pluggy
import pytest
from _pytest._code.code import ExceptionRepr, Traceback
from _pytest.fixtures import FixtureDef, FixtureLookupError, FixtureManager, TopRequest
from _pytest.nodes import Node
from _pytest.runner import SetupState
from _pytest.scope import Scope
from _pytest.tmpdir import tmppath_result_key

from pytest_runset.engine.entries import local_result
from pytest_runset.engine.state import FlowState

if TYPE_CHECKING:
    from pytest_runset.gateway.protocol import AttemptResult

_FIXTURES = pytest.StashKey["FlowFixtures"]()
_PLUGIN_NAME = "runset-flow-fixtures"
# What pytest's runner catches from a test's setup and teardown (pytest.exit() aside).
_OUTCOMES = (Exception, pytest.fail.Exception, pytest.skip.Exception, pytest.xfail.Exception)


def flow_fixtures(session: pytest.Session) -> FlowFixtures:
    """The session's :class:`FlowFixtures` (one per session)."""
    found = session.config.stash.get(_FIXTURES, None)
    if found is None or found.session is not session:
        found = session.config.stash[_FIXTURES] = FlowFixtures(session)
    return found


@dataclasses.dataclass
class _Flow:
    """A flow whose fixtures are up: its item, finalizers and what its setup printed."""

    item: pytest.Item
    finalizers: list[Callable[[], object]] = dataclasses.field(default_factory=list)
    sections: list[tuple[str, str]] = dataclasses.field(default_factory=list)


class FlowFixtures:
    """One session's flow fixtures; registered as a plugin while flows hold fixtures."""

    def __init__(self, session: pytest.Session) -> None:
        self.session = session
        self._manager: FixtureManager = session._fixturemanager
        # Module-scoped definitions, copied once per run-set file: (file node id, original).
        self._per_file: dict[tuple[str, int], FixtureDef[Any]] = {}
        # Flows whose fixtures are up, by node id, in setup order.
        self._up: dict[str, _Flow] = {}
        # Finalizers of session-, package- and file-wide fixtures set up for flows, in order.
        self._wider: list[Callable[[], object]] = []

    # -- which flows have fixtures -----------------------------------------------------------
    def has_fixtures(self, item: pytest.Item) -> bool:
        return bool(self._manager.getfixtureinfo(node=item, func=None, cls=None).names_closure)

    def after_tests(self, flows: Iterable[pytest.Item]) -> pytest.Item | None:
        """The item pytest's runner is told comes after the session's ordinary tests.

        The first flow when flows have fixtures: pytest then keeps the session-wide fixtures
        the tests set up (and the flows share) until the flows are done, rather than tearing
        them down under running flows after the last test. None (pytest's own) otherwise.
        """
        flows = list(flows)
        if not flows or len(flows) >= len(self.session.items):
            return None  # no ordinary test runs before them
        return flows[0] if any(self.has_fixtures(flow) for flow in flows) else None

    # -- the run loop: setup before dispatch, teardown with the result ------------------------
    def setup(
        self,
        state: FlowState,
        slot: int,
        attempt: int,
        ended: Callable[[FlowState, int, AttemptResult], None],
    ) -> bool:
        """Set up the flow's fixtures (once per flow); False when they ended this attempt
        (``ended`` was given its ``error`` or ``skipped`` result)."""
        item = state.item
        if item.nodeid in self._up:
            return True
        request = self._request(item)
        if request is None:
            return True
        plugins = self.session.config.pluginmanager
        if not plugins.is_registered(self):
            plugins.register(self, _PLUGIN_NAME)
        flow = self._up[item.nodeid] = _Flow(item)
        # pytest's tmp_path reads, at its teardown, how each phase went, which its
        # pytest_runtest_makereport wrapper records; a flow's reports are replayed, never made
        # there, so this module records it (below, and here for a flow never reported).
        item.stash.setdefault(tmppath_result_key, {})
        started, clock = time.time(), time.monotonic()
        try:
            with _interruptible(), self._routed(), self._captured(flow, "setup"):
                request._fillfixtures()
        except _OUTCOMES as exc:
            if isinstance(exc, pytest.exit.Exception):
                raise  # pytest.exit() ends the session, as from a test's fixture
            skipped = isinstance(exc, pytest.skip.Exception)
            # Named before the teardown below clears the failed fixture's cached error.
            # A skip says why, as pytest's own skips do; an error which fixture failed.
            message = _one_line(exc) if skipped else _message(item, exc)
            result = local_result(attempt, "skipped" if skipped else "error", message)
            result["started_at"] = started
            result["duration_s"] = round(time.monotonic() - clock, 6)
            if not skipped:
                # The flow never gets a setup report of its own to carry the output.
                output = [f"--- {name} ---\n{text.rstrip()}" for name, text in flow.sections]
                result["details"] = "\n".join([_traceback(exc), *output])
            self._teardown(flow)
            ended(state, slot, result)
            return False
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Before any other plugin hears of a flow's report: its setup report gets what the
        fixtures printed, and its fixtures are torn down right before its teardown report,
        which says if that failed (the order of pytest's own runner)."""
        flow = self._up.get(report.nodeid)
        if flow is None:
            return
        flow.item.stash.setdefault(tmppath_result_key, {})[report.when] = report.passed
        if report.when == "setup":
            report.sections.extend(flow.sections)
            return
        if report.when != "teardown":
            return
        errors = self._teardown(flow, report)
        if errors and report.passed:
            report.outcome = "failed"
            report.longrepr = _repr(errors[0])

    def close(self, say: Callable[[str], None]) -> None:
        """The flows are done: tear down every fixture still up for them; ``say`` each error
        (the session fails, as for a failed teardown)."""
        errors: list[BaseException] = []
        try:
            for flow in reversed(list(self._up.values())):
                errors.extend(self._teardown(flow))
            with self._routed():
                errors.extend(_run_all(self._wider))
            # pytest's own stack (the tests' session-wide fixtures) was kept up for the flows
            # (see after_tests): its failures are told here, not at the session's very end.
            try:
                self.session._setupstate.teardown_exact(None)
            except _OUTCOMES as exc:
                errors.append(exc)
        finally:
            if self.session.config.pluginmanager.is_registered(self):
                self.session.config.pluginmanager.unregister(self)
        for error in errors:
            say(f"runset: fixture teardown failed: {_one_line(error)}")
            self.session.testsfailed += 1

    # -- pytest's own protocol (pytest-xdist workers) ------------------------------------------
    def fill(self, item: pytest.Item) -> None:
        """Set up the flow's fixtures as pytest's runner does for a test (it tears them down)."""
        request = self._request(item)
        if request is not None:
            request._fillfixtures()

    # -- internals ------------------------------------------------------------------------
    def _request(self, item: pytest.Item) -> TopRequest | None:
        """The item's fixture request, its definitions copied where flows must not share."""
        info = self._manager.getfixtureinfo(node=item, func=None, cls=None)
        if not info.names_closure:
            return None
        defs = _FlowDefs(self, item)
        for name, found in info.name2fixturedefs.items():
            defs[name] = self._own(item, found)
        # What pytest's request reads from a test function, for an item that has none.
        item._fixtureinfo = dataclasses.replace(info, name2fixturedefs=defs)  # type: ignore[attr-defined]
        item.fixturenames = info.names_closure  # type: ignore[attr-defined]
        item.funcargs = {}  # type: ignore[attr-defined]
        return TopRequest(item, _ispytest=True)  # type: ignore[arg-type]

    def _own(
        self, item: pytest.Item, found: Sequence[FixtureDef[Any]]
    ) -> Sequence[FixtureDef[Any]]:
        return tuple(self._copy(item, fixturedef) for fixturedef in found)

    def _copy(self, item: pytest.Item, fixturedef: FixtureDef[Any]) -> FixtureDef[Any]:
        scope = fixturedef._scope
        if scope in (Scope.Function, Scope.Class):
            return _fresh(fixturedef, scope)
        if scope is Scope.Module:
            key = (item.parent.nodeid if item.parent else "", id(fixturedef))
            if key not in self._per_file:
                # pytest finds no Python module above a flow: package scope, which falls back
                # to the session, keeps this file's copy until the flows are done.
                self._per_file[key] = _fresh(fixturedef, Scope.Package)
            return self._per_file[key]
        return fixturedef

    @contextlib.contextmanager
    def _routed(self) -> Iterator[None]:
        """While flow fixtures are set up or torn down, the finalizers they register come here
        (pytest's SetupState holds one item at a time; flows overlap)."""
        session = self.session
        real = session._setupstate
        session._setupstate = _FlowSetupState(self._finalizer)
        try:
            yield
        finally:
            session._setupstate = real

    def _finalizer(self, finalizer: Callable[[], object], node: Node) -> None:
        flow = self._up.get(node.nodeid) if isinstance(node, pytest.Item) else None
        if flow is not None:
            flow.finalizers.append(finalizer)
        else:
            self._wider.append(finalizer)

    @contextlib.contextmanager
    def _captured(self, flow: _Flow, when: str) -> Iterator[None]:
        """The fixtures' output is captured as a test's is, and shown with the flow's report."""
        capture = self.session.config.pluginmanager.get_plugin("capturemanager")
        if capture is None:
            yield
            return
        sections = flow.item._report_sections
        already = len(sections)
        try:
            with capture.item_capture(when, flow.item):
                yield
        finally:
            flow.sections.extend(
                (f"Captured {key} {when}", content)
                for _, key, content in sections[already:]
                if content
            )
            del sections[already:]

    def _teardown(
        self, flow: _Flow, report: pytest.TestReport | None = None
    ) -> list[BaseException]:
        """Run the flow's own finalizers (last first); return their errors."""
        self._up.pop(flow.item.nodeid, None)
        before = len(flow.sections)
        with _interruptible(), self._routed(), self._captured(flow, "teardown"):
            errors = _run_all(flow.finalizers)
        if report is not None:
            report.sections.extend(flow.sections[before:])
        return errors


class _FlowSetupState(SetupState):
    """Stands in for the session's SetupState while flow fixtures are set up or torn down."""

    def __init__(self, route: Callable[[Callable[[], object], Node], None]) -> None:
        super().__init__()
        self._route = route

    def addfinalizer(self, finalizer: Callable[[], object], node: Node) -> None:
        self._route(finalizer, node)


class _FlowDefs(dict[str, Sequence[FixtureDef[Any]]]):
    """A flow's fixture definitions, its own copies included; a fixture asked for by name at
    run time (``request.getfixturevalue``) gets its copy too."""

    def __init__(self, owner: FlowFixtures, item: pytest.Item) -> None:
        super().__init__()
        self._owner = owner
        self._item = item

    def copy(self) -> _FlowDefs:
        copied = _FlowDefs(self._owner, self._item)
        copied.update(self)
        return copied

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self:
            found = self._owner._manager.getfixturedefs(name, self._item)
            if found is None:
                return default
            self[name] = self._owner._own(self._item, found)
        return self[name]


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) stops a fixture at once, as it stops a test: the run loop, which
    calls fixtures from its critical sections, would otherwise hold the signal until a hung
    fixture returned. Its KeyboardInterrupt then ends the loop as any interrupt does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}
    for signum in signals:
        signal.signal(signum, _raise_interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _fresh(fixturedef: FixtureDef[Any], scope: Scope) -> FixtureDef[Any]:
    """A copy of a fixture definition with no cached value and no finalizers of its own."""
    fresh = copy.copy(fixturedef)
    vars(fresh).update(cached_result=None, _finalizers=[], _scope=scope)
    return fresh


def _run_all(finalizers: list[Callable[[], object]]) -> list[BaseException]:
    errors: list[BaseException] = []
    while finalizers:
        finalizer = finalizers.pop()
        try:
            finalizer()
        except _OUTCOMES as exc:
            errors.append(exc)
    return errors


def fixture_failure(item: pytest.Item, exc: BaseException) -> str:
    """The flow's one-line message when its fixtures' setup raised ``exc``: which fixture
    failed, where it is, and why (before the failed fixture is torn down)."""
    return _message(item, exc)


def _message(item: pytest.Item, exc: BaseException) -> str:
    """One line: which fixture failed, where it is, and why."""
    if isinstance(exc, FixtureLookupError) and exc.argname:
        return f"fixture {exc.argname!r} not found"
    failed = _failed_fixture(item)
    if failed is None:
        parametrized = _parametrized_fixture(item)
        if parametrized is not None:
            where = _location(item, parametrized)
            return (
                f"fixture {parametrized.argname!r}{f' ({where})' if where else ''} is "
                "parametrized: a flow has no parameters to give it"
            )
        return f"fixture setup failed: {_one_line(exc)}"
    where = _location(item, failed)
    return f"fixture {failed.argname!r}{f' ({where})' if where else ''}: {_one_line(exc)}"


def _failed_fixture(item: pytest.Item) -> FixtureDef[Any] | None:
    info = getattr(item, "_fixtureinfo", None)
    found: Iterable[Sequence[FixtureDef[Any]]] = info.name2fixturedefs.values() if info else ()
    for fixturedefs in found:
        for fixturedef in fixturedefs:
            cached = fixturedef.cached_result
            if cached is not None and cached[2] is not None:
                return fixturedef
    return None


def _parametrized_fixture(item: pytest.Item) -> FixtureDef[Any] | None:
    info = getattr(item, "_fixtureinfo", None)
    found: Iterable[Sequence[FixtureDef[Any]]] = info.name2fixturedefs.values() if info else ()
    return next((defs[-1] for defs in found if defs and defs[-1].params is not None), None)


def _location(item: pytest.Item, fixturedef: FixtureDef[Any]) -> str:
    code = getattr(inspect.unwrap(fixturedef.func), "__code__", None)
    if code is None:
        return ""
    path = code.co_filename
    with contextlib.suppress(ValueError):
        path = os.path.relpath(path, item.config.rootpath)
    return f"{path}:{code.co_firstlineno}"


def _repr(exc: BaseException) -> ExceptionRepr | str:
    """A fixture's error as pytest shows a test's: the user's frames, not pytest's."""
    if isinstance(exc, (pytest.fail.Exception, pytest.skip.Exception)) and not exc.pytrace:
        return str(exc.msg)
    info = pytest.ExceptionInfo.from_exception(exc)
    return info.getrepr(style="short", funcargs=False, tbfilter=_user_frames)


def _traceback(exc: BaseException) -> str:
    return str(_repr(exc))


def _user_frames(info: pytest.ExceptionInfo[BaseException]) -> Traceback:
    # pytest's, pluggy's and this plugin's frames tell the user nothing about their fixture.
    internal = (Path(pytest.__file__).parent.parent / "_pytest", Path(pluggy.__file__).parent)
    own = Path(__file__).parent.parent
    return info.traceback.filter(
        lambda entry: not any(Path(entry.path).is_relative_to(d) for d in (*internal, own))
    )


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "msg", None) or exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, (pytest.fail.Exception, pytest.skip.Exception)):
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__

"""Debugging one flow: run it in this process, on the user's terminal, under pytest's debugger.

A flow normally runs in a worker gateway whose stdin is execnet's channel: ``breakpoint()``
there reads end-of-file and the flow fails with ``BdbQuit``. When the session asks for a
debugger (:func:`terminal_flow`) and exactly one flow is selected, and it is a callable, that
flow runs here instead: :class:`TerminalPool` is a pool of
one slot, this process, and hands the attempt to the same runner code
(:func:`~pytest_runset.gateway.runners.python.run_in_terminal`) on pytest's main thread. So

- ``breakpoint()`` stops in pytest's debugger on the terminal (``c`` goes on, ``q`` ends the
  session as it does for any test);
- ``--pdb`` opens a post-mortem on the flow's own frames when it fails;
- ``--trace`` stops at the flow function's first line.

Everything else is the run loop's as usual: the attempt's spec, the journal, the report,
pytest's reports. A debugged flow keeps no deadline (its time in the debugger is the user's)
and runs without containment; its output goes to the terminal, not to its logs.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from pytest_runset.engine.pool import Event, Pool, WorkerHandle
from pytest_runset.gateway.flow_dir import open_for_attempt, release
from pytest_runset.gateway.masking import mask_result
from pytest_runset.gateway.proctree import sweep_cookie
from pytest_runset.gateway.protocol import AttemptResult, AttemptSpec
from pytest_runset.gateway.result_file import write_result
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.runners import python as python_runner
from pytest_runset.gateway.runners.browser_host import HOST
from pytest_runset.gateway.runners.python import Terminal, run_in_terminal
from pytest_runset.session.collect import RunsetItem
from pytest_runset.session.terminal_plugins import DEBUGGING

# The worker id of a flow run in the controller.
WORKER_ID = "main"
RUNNER_FILE = python_runner.__file__
_DEBUGGER_CALL = re.compile(r"\b(?:breakpoint|set_trace)\s*\(")


def terminal_flow(config: pytest.Config, flows: list[RunsetItem]) -> RunsetItem | None:
    """The one flow to debug in this process, or ``None`` (then flows run on workers).

    A debugger is asked for by ``--pdb`` or ``--trace``, by an IDE's debugger running pytest
    (debugpy, pydevd), or by ``-s`` when the flow's module calls ``breakpoint()`` or
    ``set_trace()``: ``-s`` alone only shows output, and a flow keeps its worker, timeout and
    containment then.
    """
    if len(flows) != 1 or flows[0].flow.kind != "callable":
        return None
    option = config.option
    if getattr(option, "usepdb", False) or getattr(option, "trace", False) or ide_debugger():
        return flows[0]
    if getattr(option, "capture", "fd") == "no" and calls_a_debugger(flows[0]):
        return flows[0]
    return None


def ide_debugger() -> bool:
    """Whether an IDE's debugger runs this process (VS Code's debugpy, PyCharm's pydevd)."""
    return any(name in sys.modules for name in ("debugpy", "pydevd"))


def calls_a_debugger(item: RunsetItem) -> bool:
    """Whether the source of the flow's module stops in a debugger somewhere (read, never
    imported here: importing it is the flow's business)."""
    module = str(item.flow.callable_ref or "").partition(":")[0]
    base = item.runset.directory.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        try:
            source = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return _DEBUGGER_CALL.search(source) is not None
    return False


class TerminalPool(Pool):
    """A pool of one slot that is this process: its one flow runs when it is sent, on the
    calling (main) thread, and its events are queued as a gateway's would be."""

    def __init__(self, config: pytest.Config, item: RunsetItem) -> None:
        super().__init__(1)
        self.config = config
        self.item = item
        # No live status line may draw over the debugger (terminal_plugins.py).
        config.stash[DEBUGGING] = True

    def start(self) -> None:
        self.spawn(0)

    def spawn(self, slot: int) -> WorkerHandle:
        handle = WorkerHandle(slot=slot, generation=1, worker_id=WORKER_ID, ready=True)
        self.workers[slot] = handle
        self.events.put(Event(slot, handle.generation, "ready", {}))
        return handle

    def send(self, slot: int, event: str, data: Mapping[str, object]) -> bool:
        if event == "run":
            spec: AttemptSpec = dict(data)  # type: ignore[assignment]
            result = self._run(spec)
            self.events.put(Event(slot, 1, "finished", dict(result)))
        # Nothing to cancel or stop: the flow is over when send returns.
        return True

    def kill(self, slot: int) -> None:
        """Never this process."""

    def shutdown(self, timeout: float = 5.0) -> None:
        # A browser the flow used was started in this process: close it here.
        with contextlib.suppress(Exception):
            HOST.reset()

    def _run(self, spec: AttemptSpec) -> AttemptResult:
        """The attempt, as a worker runs it (gateway/worker.py), minus its thread, deadline
        and containment."""
        started_at = time.time()
        started = time.monotonic()
        open_for_attempt(spec["flow_dir"])
        control = Control(float(spec["timeout_s"]))
        # The flow's clock stands still: Playwright waits get the whole timeout each.
        control.pause()
        try:
            with _terminal(self.config):
                result = run_in_terminal(spec, control, self._terminal())
        except BaseException:
            release(spec["flow_dir"])
            raise
        finally:
            leftovers = sweep_cookie(spec["flow_id"])
        result.setdefault("metrics", {})
        result.update(
            {
                "flow_id": spec["flow_id"],
                "attempt": spec["attempt"],
                "started_at": started_at,
                "duration_s": round(time.monotonic() - started, 6),
                "leftover_processes": leftovers,
            }
        )
        secrets = spec.get("secrets") or []
        if secrets:
            result = mask_result(result, secrets)
        return write_result(spec, result)

    def _terminal(self) -> Terminal:
        tracing = bool(getattr(self.config.option, "trace", False))
        return Terminal(invoke=self._invoke if tracing else None, interact=self._interact)

    def _invoke(self, function: Callable[..., Any], arguments: dict[str, Any]) -> object:
        # --trace: stop at the function's first line, in the debugger pytest would use.
        return _debugger(self.config).runcall(function, **arguments)

    def _interact(self, exc: BaseException) -> None:
        """``--pdb``: a post-mortem on the flow's frames, through pytest's own hook."""
        if isinstance(exc, KeyboardInterrupt | pytest.exit.Exception):
            raise exc  # Ctrl-C, or quitting the debugger: ends the session, as for a test
        skipped = (pytest.skip.Exception, pytest.xfail.Exception, SystemExit)
        if not self.config.option.usepdb or isinstance(exc, skipped):
            return
        traceback = exc.__traceback__
        call = pytest.CallInfo.from_call(_raiser(exc), when="call")
        # Raising it again added this module's frames; the runner's frames are no news to
        # the user either: the report and the post-mortem start at the flow's function.
        exc.__traceback__ = traceback
        while traceback is not None and traceback.tb_frame.f_code.co_filename == RUNNER_FILE:
            traceback = traceback.tb_next
        shown = traceback or exc.__traceback__
        assert shown is not None  # it was raised
        call.excinfo = pytest.ExceptionInfo.from_exc_info((type(exc), exc, shown))
        report = pytest.TestReport.from_item_and_call(self.item, call)
        self.config.hook.pytest_exception_interact(node=self.item, call=call, report=report)


@contextlib.contextmanager
def _terminal(config: pytest.Config) -> Iterator[None]:
    """pytest's capture off, stdin included: the flow's prints and the debugger reach the
    terminal. (pytest's debugger turns capture back on when it continues, as for a test.)"""
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        yield
        return
    capture.suspend_global_capture(in_=True)
    try:
        yield
    finally:
        capture.resume_global_capture()


def _debugger(config: pytest.Config) -> Any:
    """An instance of ``--pdbcls`` (``module:Class``), else of the standard library's Pdb."""
    wanted = getattr(config.option, "usepdb_cls", None)
    if wanted:
        # pytest keeps it as (module, class) once it checked the option.
        module_name, name = wanted if isinstance(wanted, tuple) else str(wanted).split(":", 1)
        module = importlib.import_module(module_name)
        target: Any = module
        for part in name.split("."):
            target = getattr(target, part)
        return target()
    import pdb

    return pdb.Pdb()


def _raiser(exc: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise exc

    return raise_it


__all__ = ["TerminalPool", "terminal_flow"]

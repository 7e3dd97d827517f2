"""Callable flows: ``module:function`` called in the worker, parameters injected by name.

The run-set's directory is on ``sys.path``; the function runs with the flow's environment
(``os.environ``), the run-set's directory (or the flow's ``cwd``) as working directory, and
its output in the flow's ``stdout.log``/``stderr.log`` (masked, like a command flow's, children's
output included). Outcomes:

- returns: ``passed`` (then ``$RUNSET_REPORT`` may still say otherwise, like a command's);
- ``AssertionError`` (also Playwright's ``expect``): ``failed`` with the assertion's text;
- ``pytest.skip()`` or ``unittest.SkipTest``: ``skipped``; ``pytest.fail()``: ``failed``;
  ``pytest.xfail()``: ``xfailed``;
- any other exception: ``failed``, with the traceback in the details of the pytest report.

:func:`run_in_terminal` runs the same body right where it is called, with the terminal as the
flow's stdin and stdout and no deadline: how pytest-runset debugs one selected flow in the
controller (``--pdb``, ``--trace``, ``breakpoint()``; docs/ide-and-tools.md).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
import time
import traceback
import unittest
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_runset.gateway.metrics import check_metrics
from pytest_runset.gateway.protocol import AttemptResult, AttemptSpec
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.runners.browser_host import first_lines, kill_flow
from pytest_runset.gateway.runners.browser_session import Session, open_session
from pytest_runset.gateway.runners.command import SKIP_EXIT_CODE, read_flow_report
from pytest_runset.gateway.runners.inproc import (
    BodyResult,
    flow_environment,
    flow_output,
    list_artifacts,
    run_inprocess,
    touch_logs,
)
from pytest_runset.gateway.runners.steps import step_runner

_DEADLINE_SLACK_S = 0.5
NO_TERMINAL = (
    "BdbQuit: a debugger in a flow on a worker has no terminal; select this one callable "
    "flow (-k) and run with -s, --pdb or --trace to debug it in the terminal"
)


@dataclass(frozen=True)
class FlowInfo:
    """What a callable asking for ``flow`` gets."""

    name: str
    slug: str
    attempt: int
    run_id: str
    worker: str
    slot: int
    dir: Path
    run_dir: Path
    timeout_s: float
    env: dict[str, str] = field(repr=False)
    deadline: float = field(repr=False, default=0.0)

    def remaining(self) -> float:
        """Seconds left before the flow's timeout."""
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Terminal:
    """How a flow run in the terminal is called and what happens when it raises (the
    controller's debugger, see :func:`run_in_terminal`)."""

    # Calls the flow's function with its arguments (``--trace``: under the debugger); None:
    # called as in a worker.
    invoke: Callable[[Callable[..., Any], dict[str, Any]], object] | None
    # Sees the exception the function raised, while its frames are alive (``--pdb``'s
    # post-mortem); may raise to end the run (quitting the debugger).
    interact: Callable[[BaseException], None]


def run(spec: AttemptSpec, control: Control) -> AttemptResult:
    return run_inprocess(spec, control, lambda: _body(spec, control), lambda: kill_flow(spec))


def run_in_terminal(spec: AttemptSpec, control: Control, terminal: Terminal) -> AttemptResult:
    """Run the flow on this thread with this process's stdin, stdout and stderr.

    No deadline is kept (time in a debugger is the user's) and the logs stay empty but for a
    note: the output went to the terminal. What the flow returns or raises means what it means
    in a worker.
    """
    body = _body(spec, control, terminal)
    # Notes for run_inprocess's deadline, which a terminal run does not keep.
    for note in ("timeout_like", "deadline_hit", "where"):
        body.pop(note, None)  # type: ignore[misc]
    result: AttemptResult = body
    result.setdefault("exit_code", None)
    result.setdefault("warnings", [])
    result["artifacts"] = list_artifacts(spec["flow_dir"])
    return result


def _purge_foreign(module: str, root: str) -> None:
    """Forget an imported package of the same name that lives outside ``root`` (another
    run-set's ``flows`` package, say), so this flow imports its own."""
    top = module.split(".", maxsplit=1)[0]
    loaded = sys.modules.get(top)
    origin = getattr(loaded, "__file__", None) if loaded is not None else None
    if origin is None:
        return
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(origin)]) == real_root:
        return
    if not os.path.exists(os.path.join(root, top)) and not os.path.exists(
        os.path.join(root, f"{top}.py")
    ):
        return
    for name in list(sys.modules):
        if name == top or name.startswith(top + "."):
            del sys.modules[name]


def resolve(reference: str, root: str) -> Any:
    """Import ``module:function`` with ``root`` first on ``sys.path``."""
    module_name, _, function = reference.partition(":")
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    _purge_foreign(module_name, root)
    importlib.invalidate_caches()
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function)
    except AttributeError:
        raise LookupError(f"module {module_name!r} has no function {function!r}") from None


def parameters(function: Any, known: list[str] | None, ports: int = 0) -> list[str]:
    """The names to inject (checked again here when the loader could not read the source)."""
    if known is not None:
        return known
    from pytest_runset.gateway.callables import CallableError, check_params

    signature = inspect.signature(function)
    names = []
    defaults = set()
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise CallableError("positional-only parameters cannot be injected by name")
        names.append(parameter.name)
        if parameter.default is not parameter.empty:
            defaults.add(parameter.name)
    where = getattr(function, "__qualname__", "callable")
    return list(check_params(names, defaults, where, ports))


def _flow_info(spec: AttemptSpec, control: Control, env: dict[str, str]) -> FlowInfo:
    extra = spec["env"]
    return FlowInfo(
        name=str(spec["name"]),
        slug=str(spec["slug"]),
        attempt=int(spec["attempt"]),
        run_id=str(extra.get("RUNSET_RUN_ID", "")),
        worker=str(extra.get("RUNSET_WORKER", "")),
        slot=int(extra.get("RUNSET_SLOT", "0") or 0),
        dir=Path(spec["flow_dir"]),
        run_dir=Path(spec["run_dir"]),
        timeout_s=float(spec["timeout_s"]),
        env=env,
        deadline=control.deadline,
    )


def _values(
    spec: AttemptSpec, control: Control, session: Session | None, env: dict[str, str]
) -> dict[str, Any]:
    return {
        "page": session.page if session else None,
        "context": session.context if session else None,
        "browser": _browser(),
        "flow": _flow_info(spec, control, env),
        "persona": spec.get("persona"),
        "base_url": spec.get("base_url") or None,
        "flow_dir": Path(spec["flow_dir"]),
        "port": next(iter(spec.get("ports") or []), None),
        "ports": list(spec.get("ports") or []),
        "env": env,
    }


def _browser() -> Any:
    from pytest_runset.gateway.runners.browser_host import HOST

    return HOST.browser


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the flow's own function down (our frames left out)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


def _assertion_text(exc: AssertionError, details: str) -> str:
    text = str(exc)
    if text:
        return "AssertionError: " + first_lines(text)
    # A bare ``assert x == y``: show the line that failed, as pytest would point at it.
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        return f"AssertionError at {os.path.basename(last.filename)}:{last.lineno}: {last.line}"
    return "AssertionError"


def outcome(exc: BaseException) -> BodyResult:
    """The result of a callable that raised ``exc``."""
    kind = type(exc)
    name = kind.__name__
    # pytest's outcome exceptions (pytest.skip/fail/xfail); recognised without importing pytest.
    from_pytest = any(base.__name__ == "OutcomeException" for base in kind.__mro__)
    message = str(getattr(exc, "msg", "") or exc)
    if isinstance(exc, unittest.SkipTest) or (from_pytest and name == "Skipped"):
        return {"status": "skipped", "message": message or "skipped"}
    if from_pytest and name == "XFailed":
        return {"status": "xfailed", "message": message or "xfailed"}
    if from_pytest and name == "Failed":
        return {"status": "failed", "message": message or "failed"}
    if isinstance(exc, SystemExit):
        code = exc.code
        if code in (0, None):
            return {"status": "passed", "message": ""}
        if code == SKIP_EXIT_CODE:
            return {"status": "skipped", "message": f"skipped (SystemExit({SKIP_EXIT_CODE}))"}
        return {"status": "failed", "message": f"SystemExit: {code}"}
    details = _user_traceback(exc)
    if name == "BdbQuit":
        # A debugger in a worker reads end-of-file from execnet's channel and quits at once.
        return {"status": "failed", "message": NO_TERMINAL, "details": details}
    if isinstance(exc, AssertionError):
        return {"status": "failed", "message": _assertion_text(exc, details), "details": details}
    first = first_lines(str(exc)) if str(exc) else ""
    return {
        "status": "failed",
        "message": f"{name}: {first}" if first else name,
        "details": details,
        "timeout_like": name == "TimeoutError",
    }


def _call(
    spec: AttemptSpec, control: Control, session: Session | None, terminal: Terminal | None
) -> BodyResult:
    env = {**os.environ, **spec["env"]}
    output = (
        flow_output(spec["flow_dir"], spec.get("secrets") or ())
        if terminal is None
        else _to_terminal(spec["flow_dir"])
    )
    with (
        output,
        flow_environment(spec["env"], spec.get("cwd"), spec.get("env_unset") or ()),
    ):
        try:
            function = resolve(str(spec["callable"]), str(spec["root"]))
            names = parameters(function, spec.get("params"), len(spec.get("ports") or []))
        except Exception as exc:
            details = "".join(traceback.format_exception(exc)).rstrip()
            why = f"{type(exc).__name__}: {first_lines(str(exc))}"
            return {
                "status": "error",
                "message": f"cannot load {spec['callable']}: {why}",
                "details": details,
            }
        if session is None and any(name in ("page", "context", "browser") for name in names):
            return {
                "status": "error",
                "message": f"{spec['callable']} asks for a browser: set browser = true on the flow",
            }
        values = _values(spec, control, session, env)
        arguments = {name: values[name] for name in names}
        try:
            if terminal is None or terminal.invoke is None:
                function(**arguments)
            else:
                terminal.invoke(function, arguments)
        except BaseException as exc:
            if terminal is not None:
                terminal.interact(exc)
            result = outcome(exc)
            if result.pop("timeout_like", False) and control.remaining() <= _DEADLINE_SLACK_S:
                result["deadline_hit"] = True
            return result
    return {"status": "passed", "message": ""}


@contextlib.contextmanager
def _to_terminal(flow_dir: str) -> Iterator[None]:
    """A terminal run's logs say where its output went."""
    from pytest_runset.gateway.flow_dir import attempt_dir

    with attempt_dir(flow_dir) as directory, directory.open_append("stdout.log") as log:
        log.write(b"(run in the terminal: the output went there)\n")
    yield


def _body(spec: AttemptSpec, control: Control, terminal: Terminal | None = None) -> BodyResult:
    flow_dir = spec["flow_dir"]
    touch_logs(flow_dir)
    session: Session | None = None
    if spec.get("browser"):
        # The browser starts before the flow's environment applies (see browser.Host).
        session, unavailable = open_session(spec, control, step_runner(control))
        if unavailable is not None:
            return unavailable
    result: BodyResult = {"status": "error", "message": "not run"}
    try:
        result = _call(spec, control, session, terminal)
    finally:
        if session is not None:
            expired = control.cancel_reason is not None or control.remaining() <= _DEADLINE_SLACK_S
            session.finish(failed=result["status"] not in ("passed", "skipped"), expired=expired)
            result["browser"] = session.info
            result.setdefault("warnings", []).extend(session.warnings)
    if result["status"] == "passed":
        _merge_flow_report(spec, result)
    return result


def _merge_flow_report(spec: AttemptSpec, result: BodyResult) -> None:
    """``$RUNSET_REPORT`` works for callables as for commands."""
    data, problem = read_flow_report(spec["report_path"], spec["flow_dir"])
    if problem is not None:
        result.update({"status": "error", "message": problem})
        return
    if data is None:
        return
    if data["status"] is not None:
        result["status"] = data["status"]
    if data["message"]:
        result["message"] = data["message"]
    result["metrics"] = data["metrics"]
    result.setdefault("warnings", []).extend(data["warnings"])
    # Checked here, before the result is masked and sent, as well as by the worker.
    check_metrics(result)

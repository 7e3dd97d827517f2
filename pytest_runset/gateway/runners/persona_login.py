"""A persona's sign-in: once per run and host, its storage state shared by the persona's flows.

The first browser flow of a persona that has a ``login`` signs it in (its steps or callable, in
a context of its own in the worker's browser) and saves the context's storage state (cookies,
local storage) in the run's private ``auth/`` directory; every browser flow of that persona then
starts its context from that file. ``login_ttl`` renews it once it is that old.

Once per run and host, across workers and processes: the sign-in happens under an exclusive
``fcntl.flock`` on ``auth/<persona>.lock``. The first worker signs in while the others wait on
the lock, then read the state it saved. A failed sign-in is recorded beside it
(``<persona>.failed.json``): every flow of the persona then ends ``error`` with the sign-in's
own failure, and the first one keeps its screenshot (``login-failure.png``) and log.

The directory is the run's ``auth/`` on the controller's host (0700, never under a flow's
directory, so never an artifact; the controller removes it when the run ends). On a remote host
it is ``$TMPDIR/runset-auth-<uid>/<run_id>``, shared by the gateways there: each holds a
shared lock on its ``.in-use`` file while it lives, and the last one to stop removes the
directory (:func:`forget_host_dirs`), so a gateway that stops early never pulls the state from
under the others.

Runs on the worker's flow thread, like the rest of a browser session.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from pytest_runset.gateway.flow_dir import attempt_dir
from pytest_runset.gateway.masking import mask_text
from pytest_runset.gateway.protocol import AttemptSpec, LoginSpec
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.runners.browser_host import HOST, BrowserUnavailable, first_lines
from pytest_runset.gateway.runners.context_options import context_options

# Runs one step on a page: ``run_step(page, step, spec)`` (the steps runner's own executor).
StepRunner = Callable[[Any, dict[str, Any], AttemptSpec], None]
_LOCK_POLL_S = 0.05
_SCREENSHOT_TIMEOUT_MS = 5000.0
# Remote hosts' auth directories this process uses, each with the descriptor of its shared
# hold on ``.in-use``.
_HOST_DIRS: dict[str, int] = {}
_IN_USE = ".in-use"


class SignInFailed(BrowserUnavailable):
    """The persona's sign-in failed (now or earlier in the run); ``str()`` is the flow's
    message."""


def signed_in_state(spec: AttemptSpec, control: Control, run_step: StepRunner | None) -> str | None:
    """The storage state file the flow's context starts from (``None``: no sign-in).

    Signs the persona in first when no fresh state exists on this host. Raises
    :class:`SignInFailed` when the sign-in fails or failed before.
    """
    browser = spec.get("browser") or {}
    login = browser.get("login")
    if not login:
        return None
    directory = _auth_dir(spec, login)
    persona = str(login["persona"])
    state = os.path.join(directory, f"{persona}.json")
    failed = os.path.join(directory, f"{persona}.failed.json")
    with _locked(os.path.join(directory, f"{persona}.lock"), control, persona):
        ttl = login.get("ttl_s")
        failure = _recorded_failure(failed, ttl)
        if failure is not None:
            raise SignInFailed(failure)
        if _fresh(state, ttl):
            return state
        _sign_in(spec, control, login, state, failed, run_step)
    return state


def _auth_dir(spec: AttemptSpec, login: LoginSpec) -> str:
    """The private auth directory (0700, ours, not a link), made on first use."""
    directory = str(login["dir"])
    if spec.get("transfer"):
        # A remote host: one directory per run for every gateway on this host.
        run_id = os.path.basename(os.path.dirname(directory))
        parent = os.path.join(tempfile.gettempdir(), f"runset-auth-{os.getuid()}")
        _private_dir(parent)
        directory = os.path.join(parent, run_id)
        # Another gateway that stops may remove the directory between our mkdir and our
        # hold: then make it again.
        for _ in range(3):
            _private_dir(directory)
            if _hold_host_dir(directory):
                return directory
        raise OSError(errno.ENOENT, "the auth directory keeps vanishing", directory)
    _private_dir(directory)
    return directory


def _hold_host_dir(directory: str) -> bool:
    """Take this process's shared hold on a remote auth directory; False if it vanished."""
    if directory in _HOST_DIRS:
        return True
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(os.path.join(directory, _IN_USE), flags, 0o600)
    except FileNotFoundError:
        return False
    fcntl.flock(fd, fcntl.LOCK_SH)
    if os.fstat(fd).st_nlink == 0:  # removed while we waited for the lock
        os.close(fd)
        return False
    _HOST_DIRS[directory] = fd
    return True


def _private_dir(path: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise BrowserUnavailable(f"{path} is not a directory of this user: no sign-in state there")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


@contextlib.contextmanager
def _locked(path: str, control: Control, persona: str) -> Iterator[None]:
    """Hold the persona's sign-in lock; wait no longer than the flow may."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if control.cancel_reason is not None or control.remaining() <= 0:
                raise SignInFailed(
                    f"persona {persona!r}: still waiting for its sign-in in another worker "
                    "when the flow's time ran out"
                )
            time.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(descriptor)


def _fresh(state: str, ttl_s: float | None) -> bool:
    try:
        info = os.stat(state)
    except FileNotFoundError:
        return False
    return ttl_s is None or time.time() - info.st_mtime < ttl_s


def _recorded_failure(path: str, ttl_s: float | None) -> str | None:
    """The message of an earlier failed sign-in this run (it stands until the ttl)."""
    if not _fresh(path, ttl_s):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return str(json.load(handle)["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _sign_in(
    spec: AttemptSpec,
    control: Control,
    login: LoginSpec,
    state: str,
    failed: str,
    run_step: StepRunner | None,
) -> None:
    persona = str(login["persona"])
    secrets = list(spec.get("secrets") or ())
    target: AttemptSpec = {**spec, "base_url": login.get("base_url") or spec.get("base_url")}
    options = context_options(spec, HOST.playwright)
    options.pop("storage_state", None)
    if target.get("base_url"):
        options["base_url"] = target["base_url"]
    log = _Log(spec, secrets)
    started = time.monotonic()
    log.write(f"sign-in of persona {persona!r} ...")
    context = HOST.browser.new_context(**options)
    page = None
    failure: tuple[str, str] | None = None
    try:
        remaining_ms = float(max(1, round(control.remaining() * 1000)))
        context.set_default_timeout(min(30_000.0, remaining_ms))
        page = context.new_page()
        _run(login, page, context, target, run_step, log)
        partial = f"{state}.{os.getpid()}.tmp"
        context.storage_state(path=partial)
        os.chmod(partial, 0o600)
        os.replace(partial, state)
    except _StepFailed as exc:
        failure = (exc.where, exc.text)
    except Exception as exc:
        failure = ("", str(exc) or type(exc).__name__)
    finally:
        if failure is not None and page is not None:
            _keep_failure_screenshot(spec, page)
        with contextlib.suppress(Exception):
            context.close()
    if failure is None:
        log.write(f"sign-in of persona {persona!r} ok in {time.monotonic() - started:.3f}s")
        return
    where, text = failure
    message = mask_text(
        f"sign-in of persona {persona!r} failed: {where}{': ' if where else ''}"
        f"{first_lines(text)} (screenshot and log in {spec['slug']})",
        secrets,
    )
    log.write(f"{message}\n{mask_text(text, secrets)}")
    _write_private(failed, json.dumps({"message": message}))
    raise SignInFailed(message)


class _StepFailed(Exception):
    def __init__(self, where: str, text: str) -> None:
        super().__init__(text)
        self.where = where
        self.text = text


def _run(
    login: LoginSpec,
    page: Any,
    context: Any,
    spec: AttemptSpec,
    run_step: StepRunner | None,
    log: _Log,
) -> None:
    if login.get("callable"):
        _call(login, page, context, spec)
        return
    steps = list(login.get("steps") or ())
    if run_step is None:
        raise RuntimeError("this runner cannot run sign-in steps")
    for number, step in enumerate(steps, 1):
        where = f"step {number}/{len(steps)} ({step['label']})"
        started = time.monotonic()
        try:
            run_step(page, step, spec)
        except Exception as exc:
            raise _StepFailed(where, str(exc) or type(exc).__name__) from None
        log.write(f"sign-in {where} ok in {time.monotonic() - started:.3f}s")


def _call(login: LoginSpec, page: Any, context: Any, spec: AttemptSpec) -> None:
    """A callable sign-in: ``module:function`` with the run-set's directory on ``sys.path``,
    given what it asks for among page, context, browser, persona, base_url and env."""
    reference = str(login["callable"])
    module_name, _, name = reference.partition(":")
    root = str(spec.get("root") or "")
    if root and root not in sys.path:
        sys.path.insert(0, root)
    function = getattr(importlib.import_module(module_name), name)
    values = {
        "page": page,
        "context": context,
        "browser": HOST.browser,
        "persona": spec.get("persona"),
        "base_url": spec.get("base_url") or None,
        "env": {**os.environ, **spec["env"]},
    }
    params = login.get("params")
    wanted = params if params is not None else ["page"]
    function(**{key: values[key] for key in wanted if key in values})


def _keep_failure_screenshot(spec: AttemptSpec, page: Any) -> None:
    with contextlib.suppress(Exception):
        data = page.screenshot(timeout=_SCREENSHOT_TIMEOUT_MS)
        with attempt_dir(spec["flow_dir"]) as directory:
            directory.write_bytes("login-failure.png", data)


def _write_private(path: str, text: str) -> None:
    partial = f"{path}.{os.getpid()}.tmp"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


class _Log:
    """Sign-in lines in the flow's ``stdout.log``, secrets masked."""

    def __init__(self, spec: AttemptSpec, secrets: list[str]) -> None:
        self.flow_dir = spec["flow_dir"]
        self.secrets = secrets

    def write(self, line: str) -> None:
        text = mask_text(line, self.secrets) + "\n"
        with (
            contextlib.suppress(OSError),
            attempt_dir(self.flow_dir) as directory,
            directory.open_append("stdout.log") as handle,
        ):
            handle.write(text.encode("utf-8", "replace"))


def forget_host_dirs() -> None:
    """The worker stops: let go of its remote auth directories; a directory no other gateway
    holds any more is removed."""
    for directory, fd in list(_HOST_DIRS.items()):
        del _HOST_DIRS[directory]
        os.close(fd)
        try:
            last = os.open(os.path.join(directory, _IN_USE), os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # another gateway removed it already
        try:
            fcntl.flock(last, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # another gateway on this host still uses it: the last one removes it
        else:
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(last)

"""The sign-in's bookkeeping on a host, without a browser: its private directory, the lock that
makes one worker sign in while the others wait, the state's age, a recorded failure."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.gateway.protocol import AttemptSpec
from pytest_runset.gateway.runners import Control, persona_login
from pytest_runset.gateway.runners.persona_login import SignInFailed, signed_in_state


def spec_for(tmp_path: Path, **extra: Any) -> AttemptSpec:
    flow_dir = tmp_path / "run" / "flow"
    flow_dir.mkdir(parents=True, exist_ok=True)
    login = {"persona": "alice", "dir": str(tmp_path / "run" / "auth"), "ttl_s": None, "steps": []}
    login.update(extra)
    return {"flow_dir": str(flow_dir), "slug": "flow", "browser": {"login": login}}  # type: ignore[typeddict-item]


def _hold(path: str, seconds: float, ready: Any) -> None:
    with persona_login._locked(path, Control(10), "alice"):
        ready.set()
        time.sleep(seconds)


def test_a_second_process_waits_for_the_first_ones_sign_in(tmp_path: Path) -> None:
    lock = str(tmp_path / "alice.lock")
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(lock, 0.6, ready))
    holder.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        with persona_login._locked(lock, Control(10), "alice"):
            waited = time.monotonic() - started
        assert waited >= 0.3
    finally:
        holder.join(10)


def test_waiting_for_the_lock_ends_with_the_flows_time(tmp_path: Path) -> None:
    lock = str(tmp_path / "alice.lock")
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(lock, 2.0, ready))
    holder.start()
    try:
        assert ready.wait(10)
        with (
            pytest.raises(SignInFailed, match="still waiting for its sign-in"),
            persona_login._locked(lock, Control(0.2), "alice"),
        ):
            pass
    finally:
        holder.join(10)


def test_a_fresh_state_is_used_and_the_auth_directory_is_private(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    auth = tmp_path / "run" / "auth"
    auth.mkdir(mode=0o755)
    (auth / "alice.json").write_text("{}")
    assert signed_in_state(spec, Control(5), None) == str(auth / "alice.json")
    assert stat.S_IMODE(auth.stat().st_mode) == 0o700


def test_an_old_state_is_renewed_and_a_recorded_failure_stands(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, ttl_s=60.0)
    auth = tmp_path / "run" / "auth"
    auth.mkdir(mode=0o700)
    state = auth / "alice.json"
    state.write_text("{}")
    os.utime(state, (time.time() - 120, time.time() - 120))
    assert not persona_login._fresh(str(state), 60.0)
    assert persona_login._fresh(str(state), None)
    (auth / "alice.failed.json").write_text('{"message": "sign-in of persona \'alice\' failed: x"}')
    with pytest.raises(SignInFailed, match="sign-in of persona 'alice' failed: x"):
        signed_in_state(spec, Control(5), None)


def test_no_login_means_no_state(tmp_path: Path) -> None:
    assert signed_in_state({"browser": {}}, Control(5), None) is None  # type: ignore[typeddict-item]


def test_a_remote_host_shares_one_directory_per_run_and_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persona_login.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    spec = spec_for(tmp_path)
    spec["transfer"] = {"map_back": [], "host": "h", "max_bytes": 1}
    login = spec["browser"]["login"]  # type: ignore[index]
    directory = persona_login._auth_dir(spec, login)
    assert directory == str(tmp_path / "tmp" / f"runset-auth-{os.getuid()}" / "run")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    persona_login.forget_host_dirs()
    assert not os.path.exists(directory)


def _other_gateway(spec: AttemptSpec, ready: Any, stop: Any) -> None:
    persona_login._auth_dir(spec, spec["browser"]["login"])  # type: ignore[index]
    ready.set()
    stop.wait(30)
    persona_login.forget_host_dirs()


def test_the_last_gateway_on_a_host_to_stop_removes_the_shared_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gateways (processes) on one host share the directory: the first to stop leaves
    it, with the state in it, to the other; the other removes it when it stops."""
    monkeypatch.setattr(persona_login.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    spec = spec_for(tmp_path)
    spec["transfer"] = {"map_back": [], "host": "h", "max_bytes": 1}
    context = multiprocessing.get_context("fork")
    ready, stop = context.Event(), context.Event()
    other = context.Process(target=_other_gateway, args=(spec, ready, stop))
    other.start()
    try:
        assert ready.wait(30)
        directory = persona_login._auth_dir(spec, spec["browser"]["login"])  # type: ignore[index]
        Path(directory, "alice.json").write_text("{}")
        persona_login.forget_host_dirs()
        assert Path(directory, "alice.json").exists(), "removed under the other gateway"
        stop.set()
        other.join(30)
        assert other.exitcode == 0
        assert not os.path.exists(directory)
    finally:
        stop.set()
        other.join(30)

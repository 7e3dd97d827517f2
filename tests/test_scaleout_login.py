"""Persona sign-in on remote gateways over real ssh: the sign-in happens on that host, in the
worker, once per run and host, shared by the gateways there, and leaves nothing behind.

A throwaway sshd on 127.0.0.1 (``ssh_support``) stands in for the build host, and a real
Chromium signs in to a real app (``signin_app``) that counts its sign-ins. Both are on this
machine, so "once per host" is told apart from "once per worker" by two gateways of one
``2*ssh`` set, each running flows of the persona, and the app counting one sign-in.

Personas are leased per host across sessions: the personas here are used by no other test, so
a session running beside this one cannot hold them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import run_in
from signin_app import PASSWORD, SignInApp, serve
from ssh_support import HOSTS, Sshd, needs_sshd, running_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[str, SignInApp]]:
    yield from serve(signin_delay_s=0.3)


SAM = """
[runset]
timeout = "60s"

[personas.sam]
username = "sam"
password_env = "SAM_PW"
login = { steps = [
  { goto = "/login" },
  { fill = "#user", value = "{persona.username}" },
  { fill = "#password", value = "{persona.password}" },
  { click = "#go" },
  { expect_text = "h1", text = "Welcome, sam" },
] }
"""
HOME = """
[[flows]]
name = "{name}"
persona = "sam"
steps = [{{ goto = "/home?flow={{slug}}" }}, {{ expect_text = "h1", text = "Welcome, sam" }}]
"""
# Holds its worker until sam has signed in, then ``seconds`` more.
HOLD = """
[[flows]]
name = "{name}"
command = [{python}, "-c", {script}, "{{base_url}}/count", "{seconds}"]
"""
HOLD_SCRIPT = (
    "import sys, time, urllib.request\n"
    "deadline = time.monotonic() + 50\n"
    "while int(urllib.request.urlopen(sys.argv[1], timeout=10).read()) < 1:\n"
    "    assert time.monotonic() < deadline, 'no sign-in'\n"
    "    time.sleep(0.05)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def login_runset(directory: Path) -> None:
    """Queue order puts sam's second flow on the other gateway: "a1" signs in on one
    while "hold 1" keeps the other; the first then takes "hold 2", so the other, freed first,
    runs "a2"."""
    hold = {"python": json.dumps(sys.executable), "script": json.dumps(HOLD_SCRIPT)}
    text = SAM + HOME.format(name="a1")
    text += HOLD.format(name="hold 1", seconds=4, **hold)
    text += HOLD.format(name="hold 2", seconds=6, **hold)
    text += HOME.format(name="a2") + HOME.format(name="a3")
    (directory / "run-set.toml").write_text(text, encoding="utf-8")


class Watch:
    """Samples paths while a run goes on: which of them ever held a file."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        self.seen: set[Path] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(0.02):
            self.seen.update(path for path in self.paths if path.exists())

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


@needs_sshd
def test_on_an_ssh_host_the_persona_signs_in_once_there_for_every_gateway(
    sshd: Sshd,
    app: tuple[str, SignInApp],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base_url, state = app
    login_runset(tmp_path)
    monkeypatch.setenv("SAM_PW", PASSWORD)
    run_id = f"sshlogin{os.getpid()}"
    run_dir = tmp_path / "runset-results" / run_id
    # The remote host's auth directory, shared by its gateways (persona_login.py).
    host_dir = Path(tempfile.gettempdir()) / f"runset-auth-{os.getuid()}" / run_id
    already = len(state.signed_in)
    with Watch(host_dir / "sam.json", run_dir / "auth" / "sam.json") as watch:
        code, output, report, _run_dir = run_in(
            tmp_path, run_id, "--runset-tx", f"2*{sshd.spec(HOSTS[0])}", base_url=base_url
        )
    assert code == 0, output.str()
    flows = {flow["name"]: flow for flow in report["flows"]}
    assert {name: flow["status"] for name, flow in flows.items()} == dict.fromkeys(
        ("a1", "hold 1", "hold 2", "a2", "a3"), "passed"
    ), output.str()
    # sam's flows ran on both gateways of the host, and sam signed in once for them all.
    workers = [flows[name]["worker"] for name in ("a1", "a2")]
    assert sorted(workers) == ["gw0@runset-a", "gw1@runset-a"], workers
    assert state.signed_in[already:] == ["sam"]
    assert [state.homes.get(name) for name in ("a1", "a2", "a3")] == ["sam"] * 3
    # The sign-in ran in the worker on that host: its state was saved in the host's directory,
    # never in the controller's auth/, and its log came back with the flow that signed in.
    assert watch.seen == {host_dir / "sam.json"}
    assert "sign-in of persona 'sam' ok" in (run_dir / "a1" / "stdout.log").read_text()
    assert "sign-in of persona" not in (run_dir / "a2" / "stdout.log").read_text()
    # Nothing is left: not the host's auth directory, not the scratch dirs, not auth/.
    assert not host_dir.exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"runset-*/{run_id}"))
    assert not (run_dir / "auth").exists()
    assert not any("auth" in path for flow in flows.values() for path in flow["artifacts"])

"""Persona sign-in under pytest-xdist: xdist's workers are separate processes with no pool of
ours between them, and still sign a persona in once per run (the lock in the run's auth/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import run_in
from signin_app import PASSWORD, SignInApp, serve

# xdist.plugin, not xdist: see test_xdist.py.
pytest.importorskip("xdist.plugin", reason="needs pytest-xdist (tox -e xdist, .ci/run)")

ALICE = """
[personas.xena]
username = "xena"
password_env = "XENA_PW"
login = { steps = [
  { goto = "/login" },
  { fill = "#user", value = "{persona.username}" },
  { fill = "#password", value = "{persona.password}" },
  { click = "#go" },
  { expect_text = "h1", text = "Welcome, xena" },
] }
"""
HOME = """
[[flows]]
name = "home {number}"
persona = "xena"
steps = [{{ goto = "/home" }}, {{ expect_text = "h1", text = "Welcome, xena" }}]
"""


@pytest.fixture
def app() -> Iterator[tuple[str, SignInApp]]:
    yield from serve(signin_delay_s=0.3)


def test_under_xdist_the_persona_signs_in_once_for_every_worker(
    app: tuple[str, SignInApp], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, state = app
    text = ALICE + "".join(HOME.format(number=n) for n in range(1, 5))
    (tmp_path / "run-set.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("XENA_PW", PASSWORD)
    code, output, report, run_dir = run_in(tmp_path, "x", "-n", "2", base_url=base_url)
    assert code == 0, output.str()
    # -n is pytest-xdist's here: the flows ran in its two workers.
    output.fnmatch_lines(["*2 workers [[]4 items[]]*"])
    assert [flow["status"] for flow in report["flows"]] == ["passed"] * 4
    assert state.signed_in == ["xena"]
    assert not (run_dir / "auth").exists()

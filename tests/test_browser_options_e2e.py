"""Browser options, projects and persona sign-in end to end: real Chromium against a real
local app (tests/signin_app.py), through pytest subprocesses.

One run covers device emulation, the shared sign-in of 12 flows on 2 workers and a failed
sign-in; another the projects (browser flows once per project, command flows once); another a
pool of two signed-in personas. Under pytest-xdist: tests/xdist/test_xdist_signin.py; on ssh
gateways: tests/test_scaleout_login.py.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import run_in
from signin_app import PASSWORD, SignInApp, serve

from conftest import flows_by_name


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[str, SignInApp]]:
    yield from serve(signin_delay_s=0.3)


SIGN_IN = """
login = {{ steps = [
  {{ goto = "/login" }},
  {{ fill = "#user", value = "{{persona.user}}" }},
  {{ fill = "#password", value = "{{persona.password}}" }},
  {{ click = "#go" }},
  {{ expect_text = "h1", text = "Welcome, {user}", timeout = "{timeout}" }},
] }}
"""

HOME = """
[[flows]]
name = "home {number}"
persona = "{persona}"
steps = [{{ goto = "/home" }}, {{ expect_text = "h1", text = "Welcome, {persona}" }}]
"""

DEVICE = """
[[flows]]
name = "phone"
browser = { device = "iPhone 13", locale = "de-DE" }
steps = [
  { goto = "/" },
  { expect_text = "#ua", contains = "iPhone" },
  { expect_text = "#width", text = "390" },
  { expect_text = "#language", text = "de-DE" },
]
"""


def signin_runset(directory: Path) -> None:
    text = '[personas.alice]\nuser = "alice"\npassword_env = "ALICE_PW"\n'
    text += SIGN_IN.format(user="alice", timeout="10s")
    # bob's password is wrong: his sign-in fails, and so do his flows.
    text += '[personas.bob]\nuser = "bob"\npassword = "wrong"\n'
    text += SIGN_IN.format(user="bob", timeout="1s")
    text += DEVICE
    text += "".join(HOME.format(number=n, persona="alice") for n in range(1, 13))
    text += "".join(HOME.format(number=n, persona="bob") for n in (13, 14))
    (directory / "run-set.toml").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def signed_in(
    app: tuple[str, SignInApp], tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, Any, dict[str, Any], Path, int]:
    """One run of the whole run-set on 2 workers, and the app's sign-ins during it."""
    base_url, state = app
    directory = tmp_path_factory.mktemp("signin")
    signin_runset(directory)
    before = state.signins
    mp = pytest.MonkeyPatch()
    mp.setenv("ALICE_PW", PASSWORD)
    try:
        code, output, report, run_dir = run_in(
            directory, "s", "--runset-workers", "2", base_url=base_url
        )
    finally:
        mp.undo()
    return code, output, report, run_dir, state.signins - before


def test_a_device_and_locale_give_the_page_an_iphone_of_390_px_in_german(
    signed_in: tuple[int, Any, dict[str, Any], Path, int],
) -> None:
    _code, output, report, _run_dir, _signins = signed_in
    phone = flows_by_name(report)["phone"]
    assert phone["status"] == "passed", (phone["message"], output.str())


def test_twelve_flows_of_one_persona_on_two_workers_sign_in_once(
    signed_in: tuple[int, Any, dict[str, Any], Path, int],
) -> None:
    _code, output, report, run_dir, signins = signed_in
    flows = flows_by_name(report)
    alice = [flows[f"home {n}"] for n in range(1, 13)]
    assert [flow["status"] for flow in alice] == ["passed"] * 12, output.str()
    # A persona is leased to one flow at a time, so alice's flows ran one after the other,
    # on whichever worker was free: the first one signed in, the others reused its state.
    assert signins == 1
    # The sign-in's state lived in the run's private auth/ directory, gone with the run, and
    # is no flow's artifact.
    assert not (run_dir / "auth").exists()
    assert not any("auth" in path for flow in alice for path in flow["artifacts"])


def test_a_failed_sign_in_ends_the_personas_flows_as_errors_with_its_failure(
    signed_in: tuple[int, Any, dict[str, Any], Path, int],
) -> None:
    code, _output, report, run_dir, _signins = signed_in
    assert code == 1
    flows = flows_by_name(report)
    bob = [flows["home 13"], flows["home 14"]]
    assert [flow["status"] for flow in bob] == ["error", "error"]
    for flow in bob:
        assert flow["message"].startswith(
            "sign-in of persona 'bob' failed: step 5/5 (expect_text \"h1\"): Locator expected "
            "to have text 'Welcome, bob'"
        ), flow["message"]
    # The flow that tried keeps the sign-in's screenshot and log.
    shots = [
        path for flow in bob for path in flow["artifacts"] if path.endswith("login-failure.png")
    ]
    assert len(shots) == 1
    assert (run_dir / shots[0]).stat().st_size > 0
    tried = shots[0].split("/")[0]
    assert "sign-in step 4/5" in (run_dir / tried / "stdout.log").read_text()


PROJECTS = """
[[runset.projects]]
name = "desktop"
viewport = { width = 1280, height = 800 }

[[runset.projects]]
name = "mobile"
device = "Pixel 5"

[[flows]]
name = "width"
steps = [{ goto = "/" }, { screenshot = "page.png" }]

[[flows]]
name = "api"
command = ["python3", "-c", "pass"]
"""


def test_projects_give_each_browser_flow_an_item_per_project(
    app: tuple[str, SignInApp], tmp_path: Path
) -> None:
    base_url, _state = app
    (tmp_path / "run-set.toml").write_text(PROJECTS, encoding="utf-8")
    code, output, report, run_dir = run_in(tmp_path, "p", "-n", "2", "-v", base_url=base_url)
    assert code == 0, output.str()
    rows = [(flow["nodeid"], flow["slug"], flow.get("project")) for flow in report["flows"]]
    assert rows == [
        ("run-set.toml::width[desktop]", "width-desktop", "desktop"),
        ("run-set.toml::width[mobile]", "width-mobile", "mobile"),
        ("run-set.toml::api", "api", None),
    ]
    sizes = {
        project: png_size(run_dir / f"width-{project}" / "page.png")
        for project in ("desktop", "mobile")
    }
    assert sizes["desktop"] == (1280, 800)
    # Pixel 5: 393 CSS pixels wide at a device scale factor of 2.75.
    assert sizes["mobile"][0] == round(393 * 2.75)
    # -k selects a project.
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--runset", "run-set.toml", "-p", "no:cacheprovider",
         "-k", "mobile", "--collect-only", "-q"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert "run-set.toml::width[mobile]" in collected.stdout.splitlines(), collected.stdout
    assert "run-set.toml::width[desktop]" not in collected.stdout


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


POOL = """
[personas.ann]
username = "ann"
password_env = "ANN_PW"
{login}
[personas.ben]
username = "ben"
password_env = "BEN_PW"
{login}
[persona_pools]
team = ["ann", "ben"]
"""

POOL_SIGN_IN = """login = { steps = [
  { goto = "/login" },
  { fill = "#user", value = "{persona.username}" },
  { fill = "#password", value = "{persona.password}" },
  { click = "#go" },
  { expect_text = "h1", regex = "^Welcome, " },
] }
"""

# The page says whom the app greets, and /home?flow= makes the app record it per flow.
TEAM = """
[[flows]]
name = "team {number}"
persona = "pool:team"
steps = [
  {{ goto = "/home?flow={{slug}}" }},
  {{ expect_text = "h1", text = "Welcome, {{persona.username}}" }},
]
"""


def test_a_pool_signs_each_member_in_once_and_each_flow_is_its_member(
    app: tuple[str, SignInApp], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, state = app
    text = POOL.format(login=POOL_SIGN_IN)
    text += "".join(TEAM.format(number=n) for n in range(1, 7))
    (tmp_path / "run-set.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("ANN_PW", PASSWORD)
    monkeypatch.setenv("BEN_PW", PASSWORD)
    already = len(state.signed_in)
    code, output, report, run_dir = run_in(
        tmp_path, "pool", "--runset-workers", "2", base_url=base_url
    )
    assert code == 0, output.str()
    flows = report["flows"]
    assert [flow["status"] for flow in flows] == ["passed"] * 6, output.str()
    # Two workers took flows at once, so both members were given out.
    members = {flow["slug"]: flow["persona"] for flow in flows}
    assert set(members.values()) == {"ann", "ben"}, members
    # Each member signed in once for the whole run, whoever's flow came first.
    assert sorted(state.signed_in[already:]) == ["ann", "ben"]
    # The app greeted every flow as the member the report says it was given: each flow
    # started from its own member's state, never the other one's.
    assert {slug: state.homes.get(slug) for slug in members} == members
    assert not (run_dir / "auth").exists()

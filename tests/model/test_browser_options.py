"""Browser options, projects and persona sign-ins at load time (no browser): how the levels
merge, what the loader refuses in one line, how projects multiply browser flows, and the
device list read from the installed Playwright."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_runset.model import browser_options
from pytest_runset.model.browser_options import device_names, device_problem
from pytest_runset.model.flows import RunSet, RunsetError
from pytest_runset.model.loader import load_runset

STEPS = 'steps = [{ goto = "/" }]'


def load(tmp_path: Path, text: str) -> RunSet:
    path = tmp_path / "run-set.toml"
    path.write_text(text, encoding="utf-8")
    return load_runset(path, display="run-set.toml")


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(RunsetError) as info:
        load(tmp_path, text)
    return str(info.value)


def profile_of(runset: RunSet, slug: str) -> Any:
    flow = next(flow for flow in runset.flows if flow.slug == slug)
    return flow.browser_profile


# -- options and levels --------------------------------------------------------------------------


def test_flow_options_override_the_runset_defaults_key_by_key(tmp_path: Path) -> None:
    runset = load(
        tmp_path,
        f"""
[runset.browser]
locale = "en-GB"
color_scheme = "dark"
slow_mo = "250ms"
args = ["--lang=en"]
http_credentials = {{ username = "u", password_env = "BASIC_PW" }}
[[flows]]
name = "a"
{STEPS}
browser = {{ locale = "de-DE", timezone_id = "Europe/Berlin", name = "firefox", headless = false }}
""",
    )
    profile = profile_of(runset, "a")
    assert profile.name == "firefox"
    assert profile.launch == {"slow_mo": 250.0, "args": ["--lang=en"], "headless": False}
    assert profile.context == {
        "locale": "de-DE",
        "color_scheme": "dark",
        "timezone_id": "Europe/Berlin",
    }
    assert profile.credentials == ("u", "BASIC_PW")


def test_a_device_replaces_the_viewport_and_user_agent_of_the_levels_below(
    tmp_path: Path,
) -> None:
    runset = load(
        tmp_path,
        f"""
[runset]
viewport = {{ width = 1000, height = 700 }}
[runset.browser]
user_agent = "desktop-agent"
[[flows]]
name = "phone"
{STEPS}
browser = {{ device = "iPhone 13", locale = "de-DE" }}
[[flows]]
name = "phone sized"
{STEPS}
viewport = {{ width = 320, height = 500 }}
browser = {{ device = "iPhone 13" }}
[[flows]]
name = "desk"
{STEPS}
""",
    )
    assert profile_of(runset, "phone").context == {"device": "iPhone 13", "locale": "de-DE"}
    # The same level's own viewport still wins over its device's.
    assert profile_of(runset, "phone-sized").context["viewport"] == {"width": 320, "height": 500}
    desk = next(flow for flow in runset.flows if flow.slug == "desk")
    assert desk.viewport == (1000, 700)
    assert profile_of(runset, "desk").context["user_agent"] == "desktop-agent"


def test_a_callable_with_a_table_of_options_has_a_browser(tmp_path: Path) -> None:
    (tmp_path / "journey.py").write_text("def run(flow_dir):\n    pass\n")
    runset = load(
        tmp_path,
        '[[flows]]\nname = "c"\ncallable = "journey:run"\nbrowser = { locale = "fr-FR" }\n',
    )
    assert runset.flows[0].browser
    assert runset.flows[0].browser_profile is not None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'browser = { colour_scheme = "dark" }',
            "flow #1 'x', field 'browser.colour_scheme': unknown key (typo?)",
        ),
        (
            'browser = { locale = "de DE" }',
            "flow #1 'x', field 'browser.locale': 'de DE' is not a locale such as 'en-US' or "
            "'de-DE'",
        ),
        (
            'browser = { color_scheme = "black" }',
            "flow #1 'x', field 'browser.color_scheme': must be 'light', 'dark' or 'no-preference'",
        ),
        (
            'browser = { permissions = ["geolocaton"] }',
            "flow #1 'x', field 'browser.permissions': unknown permission 'geolocaton' "
            "(closest: geolocation)",
        ),
        (
            "browser = { geolocation = { latitude = 91, longitude = 0 } }",
            "flow #1 'x', field 'browser.geolocation.latitude': must be less than or equal to 90",
        ),
        (
            'browser = { http_credentials = { username = "u", password_env = "not a var" } }',
            "flow #1 'x', field 'browser.http_credentials.password_env': names an environment "
            "variable, not 'not a var'",
        ),
        (
            "browser = { slow_mo = -1 }",
            "flow #1 'x', field 'browser.slow_mo': must be between 0 and 60000 milliseconds",
        ),
        ('browser = "yes"', "flow #1 'x', field 'browser': must be a boolean, not a string"),
    ],
)
def test_bad_options_are_one_line_naming_file_flow_and_field(
    tmp_path: Path, body: str, message: str
) -> None:
    error = load_error(tmp_path, f'[[flows]]\nname = "x"\n{STEPS}\n{body}\n')
    assert error == f"run-set.toml: {message}"


def test_an_unknown_time_zone_names_the_closest(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[runset.browser]\ntimezone_id = "Europe/Berln"\n')
    assert error.startswith(
        "run-set.toml: [runset], field 'browser.timezone_id': unknown time zone 'Europe/Berln' "
        "(closest: Europe/Berlin"
    )


def test_command_flows_take_no_browser_options(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[[flows]]\nname = "c"\ncommand = ["true"]\nbrowser = {}\n')
    assert error == "run-set.toml: flow #1 'c', field 'browser': command flows have no browser"


# -- devices -------------------------------------------------------------------------------------


def test_devices_are_read_from_the_installed_playwright_without_starting_it() -> None:
    names = device_names()
    assert names is not None, "Playwright is installed for the test suite"
    assert {"iPhone 13", "Pixel 5", "Desktop Chrome"} <= set(names)
    assert device_problem("iPhone 13") is None


def test_an_unknown_device_names_the_closest_ones(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, f'[[flows]]\nname = "x"\n{STEPS}\nbrowser = {{ device = "Pixel5" }}\n'
    )
    assert error.startswith(
        "run-set.toml: flow #1 'x', field 'browser.device': unknown device 'Pixel5' "
        "(closest: 'Pixel 5'"
    )


def test_device_names_come_from_a_json_list_or_the_bundled_javascript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "package"
    (package / "lib").mkdir(parents=True)
    (package / "lib" / "coreBundle.js").write_text(
        'var x = 1;\nvar deviceDescriptorsSource_default = {\n  "Phone \\"A\\"": {\n'
        '    userAgent: "Mozilla {braces} \\"q\\"",\n    viewport: { width: 1, height: 2 }\n'
        '  },\n  "Tablet B": { hasTouch: true }\n};\nvar y = { "Not a device": 1 };\n'
    )
    monkeypatch.setattr(browser_options, "_driver_package", lambda: package)
    device_names.cache_clear()
    try:
        assert device_names() == ('Phone "A"', "Tablet B")
        (package / "lib" / "server").mkdir()
        (package / "lib" / "server" / "deviceDescriptorsSource.json").write_text(
            '{"Only JSON": {"viewport": {"width": 1, "height": 1}}}'
        )
        device_names.cache_clear()
        assert device_names() == ("Only JSON",)
        monkeypatch.setattr(browser_options, "_driver_package", lambda: None)
        device_names.cache_clear()
        # No Playwright: nothing to check against, so any name passes the loader.
        assert device_names() is None
        assert device_problem("Anything") is None
    finally:
        device_names.cache_clear()


# -- projects ------------------------------------------------------------------------------------

PROJECTS = """
[[runset.projects]]
name = "desktop"
viewport = { width = 1280, height = 800 }
[[runset.projects]]
name = "mobile"
device = "Pixel 5"
"""


def test_each_browser_flow_runs_once_per_project_and_commands_once(tmp_path: Path) -> None:
    runset = load(
        tmp_path,
        PROJECTS
        + f"""
[runset.browser]
locale = "en-US"
[[flows]]
name = "Log in"
{STEPS}
[[flows]]
name = "api"
command = ["true"]
[[flows]]
name = "only mobile"
{STEPS}
projects = ["mobile"]
browser = {{ locale = "de-DE" }}
""",
    )
    rows = [(f.item_name, f.slug, f.name, f.project, f.index) for f in runset.flows]
    assert rows == [
        ("log-in[desktop]", "log-in-desktop", "Log in [desktop]", "desktop", 0),
        ("log-in[mobile]", "log-in-mobile", "Log in [mobile]", "mobile", 0),
        ("api", "api", "api", None, 1),
        ("only-mobile[mobile]", "only-mobile-mobile", "only mobile [mobile]", "mobile", 2),
    ]
    contexts = [f.browser_profile.context for f in runset.flows if f.browser_profile]
    assert contexts == [
        {"locale": "en-US", "viewport": {"width": 1280, "height": 800}},
        {"locale": "en-US", "device": "Pixel 5"},
        # The flow's own table wins over its project's.
        {"locale": "de-DE", "device": "Pixel 5"},
    ]


def test_project_slugs_never_clash_with_other_flows(tmp_path: Path) -> None:
    runset = load(
        tmp_path,
        PROJECTS
        + f'[[flows]]\nname = "a"\n{STEPS}\n[[flows]]\nname = "a-mobile"\ncommand = ["true"]\n',
    )
    assert [flow.slug for flow in runset.flows] == ["a-desktop", "a-mobile-2", "a-mobile"]


def test_a_project_chooses_its_engine_with_browser_name(tmp_path: Path) -> None:
    runset = load(
        tmp_path,
        '[[runset.projects]]\nname = "ff"\nbrowser_name = "firefox"\n'
        f'[[flows]]\nname = "a"\n{STEPS}\n',
    )
    assert runset.flows[0].browser_profile is not None
    assert runset.flows[0].browser_profile.name == "firefox"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            PROJECTS + f'[[flows]]\nname = "a"\n{STEPS}\nprojects = ["tablet"]\n',
            "flow #1 'a', field 'projects': unknown project 'tablet' (projects: desktop, mobile)",
        ),
        (
            f'[[flows]]\nname = "a"\n{STEPS}\nprojects = ["x"]\n',
            "flow #1 'a', field 'projects': unknown project 'x' (projects: none defined in "
            "[[runset.projects]])",
        ),
        (
            '[[flows]]\nname = "a"\ncommand = ["true"]\nprojects = ["desktop"]\n',
            "flow #1 'a', field 'projects': command flows run once, in no project",
        ),
        (
            '[[runset.projects]]\nname = "a"\n[[runset.projects]]\nname = "A"\n',
            "[runset], field 'projects': project name 'a' is used twice",
        ),
        (
            '[[runset.projects]]\nname = "big screen"\n',
            "[runset], field 'projects[0].name': project name 'big screen': use letters, digits, "
            "'_', '.' and '-', starting with a letter or digit (it is part of node ids and "
            "directory names)",
        ),
    ],
)
def test_bad_projects_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text) == f"run-set.toml: {message}"


# -- persona sign-in -----------------------------------------------------------------------------


def test_a_persona_login_is_validated_and_is_no_field(tmp_path: Path) -> None:
    runset = load(
        tmp_path,
        """
[personas.alice]
user = "alice"
password_env = "ALICE_PW"
login = { steps = [{ goto = "/login" }, { fill = "#p", value = "{persona.password}" }] }
login_ttl = "10m"
""",
    )
    alice = runset.personas["alice"]
    assert alice.field_names == {"user", "password"}
    assert alice.login is not None
    assert alice.login.ttl_s == 600.0
    assert [step["action"] for step in alice.login.steps] == ["goto", "fill"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("login = { stepz = [] }", "field 'personas.a.login.stepz': unknown key (typo?)"),
        ('login_ttl = "5m"', "field 'personas': persona 'a': login_ttl needs a login"),
        (
            'login = { steps = [{ goto = "/{slug}" }] }',
            "persona 'a', field 'login', step 1: {slug} names one flow, and the sign-in "
            "serves every flow of the persona",
        ),
        (
            'login = { steps = [{ fill = "#p", value = "{persona.pin}" }] }',
            "persona 'a', field 'login', step 1 (fill \"#p\"): 'value': placeholder "
            "{persona.pin}: the persona has no field 'pin' (fields: none)",
        ),
        (
            'login = { spec = "nope.toml" }',
            "persona 'a', field 'login', spec 'nope.toml': no such spec file",
        ),
        (
            'login = { steps = [], spec = "x" }',
            "field 'personas.a.login': give exactly one of steps, spec, callable",
        ),
    ],
)
def test_bad_sign_ins_are_one_line(tmp_path: Path, table: str, message: str) -> None:
    assert load_error(tmp_path, f"[personas.a]\n{table}\n") == f"run-set.toml: {message}"

"""Browser flows at load time (steps, spec files, callables) and the browser lookup, without a
browser: the loader, the step vocabulary, callable signatures, executable resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_runset.gateway.callables import CallableError, inspect_callable, split_reference
from pytest_runset.gateway.runners.browser_host import (
    BrowserUnavailable,
    find_system_chromium,
    first_lines,
    resolve_executable,
)
from pytest_runset.model.flows import RunsetError
from pytest_runset.model.loader import load_runset
from pytest_runset.model.steps import ACTIONS, SpecError, load_spec, parse_step, step_label


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "run-set.toml"
    path.write_text(text, encoding="utf-8")
    return load_runset(path, display="run-set.toml")


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(RunsetError) as info:
        load(tmp_path, text)
    return str(info.value)


# -- steps ---------------------------------------------------------------------------------------


def test_every_action_of_the_contract_is_known() -> None:
    assert ACTIONS == (
        "goto", "click", "fill", "press", "check", "uncheck", "select", "hover", "wait_for",
        "expect_visible", "expect_hidden", "expect_text", "expect_url", "expect_title",
        "screenshot",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"goto": "/login"}, {"action": "goto", "target": "/login", "timeout_s": None}),
        ({"click": "#b", "timeout": "2s"}, {"action": "click", "target": "#b", "timeout_s": 2.0}),
        ({"fill": "#u", "value": ""}, {"action": "fill", "value": ""}),
        ({"press": "#u", "key": "Enter"}, {"key": "Enter"}),
        ({"select": "#c", "value": ["a", "b"]}, {"value": ["a", "b"]}),
        ({"wait_for": "#x"}, {"state": "visible"}),
        ({"wait_for": "#x", "state": "detached"}, {"state": "detached"}),
        ({"expect_text": "h1", "text": "Hi"}, {"match": "text", "expected": "Hi"}),
        ({"expect_text": "h1", "contains": "H"}, {"match": "contains", "expected": "H"}),
        ({"expect_text": "h1", "regex": "^H\\d{2}"}, {"match": "regex", "expected": "^H\\d{2}"}),
        ({"expect_url": "/items"}, {"target": "/items", "regex": False}),
        ({"expect_title": "^A.*", "regex": True}, {"target": "^A.*", "regex": True}),
        ({"screenshot": "a/b.png", "full_page": True}, {"target": "a/b.png", "full_page": True}),
        ({"fill": "#u", "value": "{env.USER_NAME}"}, {"value": "{env.USER_NAME}"}),
    ],
)
def test_valid_steps(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    step = parse_step(raw)
    for key, value in expected.items():
        assert step[key] == value


def test_labels_name_action_and_target() -> None:
    assert step_label("click", "role=button[name='Pay']") == "click \"role=button[name='Pay']\""
    assert step_label("fill", "x" * 200).endswith('..."')
    assert parse_step({"fill": "#pw", "value": "secret"})["label"] == 'fill "#pw"'


STEP_ERRORS = [
    ("{ clik = '#a' }", "step 1: unknown step 'clik' (typo?); steps are goto, click"),
    ("{ value = 'x' }", "step 1: no action: give one of goto"),
    ("{ click = '#a', fill = '#b' }", "step 1: two actions (click and fill)"),
    ("{ fill = '#u' }", "step 1 (fill \"#u\"): needs 'value'"),
    ("{ press = '#u' }", "step 1 (press \"#u\"): needs 'key'"),
    ("{ select = '#c' }", "step 1 (select \"#c\"): needs 'value'"),
    ("{ expect_text = 'h1' }", "needs exactly one of 'text', 'contains' or 'regex'"),
    ("{ expect_text = 'h1', text = 'a', contains = 'b' }", "needs exactly one of"),
    ("{ expect_text = 'h1', regex = 'a(' }", "bad regex 'a(': missing ), unterminated"),
    ("{ expect_url = '(', regex = true }", 'step 1 (expect_url "("): bad regex'),
    ("{ expect_title = 'x', regex = 'yes' }", "'regex' must be a boolean here"),
    ("{ click = '#a', valu = 'x' }", "'valu': unknown key (typo?); click takes timeout"),
    ("{ click = '#a', value = 'x' }", "'value': not taken by this action"),
    ("{ click = 3 }", "the selector must be a string, not an integer"),
    ("{ click = ' ' }", "the selector must not be empty"),
    ("{ fill = '#u', value = 3 }", "'value' must be a string, not an integer"),
    ("{ click = '#a', timeout = '5 minutes' }", "'timeout': '5 minutes' is not a duration"),
    ("{ click = '#a', timeout = 0 }", "'timeout' must be greater than 0"),
    ("{ wait_for = '#a', state = 'gone' }", "'state' must be one of attached, detached"),
    ("{ screenshot = '../x.png' }", "must be a relative path inside the flow directory"),
    ("{ screenshot = 'x.gif' }", "must end in .png, .jpg or .jpeg"),
    ("{ screenshot = 'trace.zip' }", "must end in .png"),
    ("{ goto = '/{nope}' }", "the URL: unknown placeholder {nope}"),
    ("{ goto = '/{port}' }", "{port} is only known to flows that lease ports"),
    ("{ fill = '#u', value = '{persona.username}' }", "needs a persona"),
    ("'click'", 'step 1: must be a table like { click = "#id" }, not a string'),
]


@pytest.mark.parametrize(("step", "message"), STEP_ERRORS)
def test_bad_steps_name_flow_and_step(tmp_path: Path, step: str, message: str) -> None:
    error = load_error(tmp_path, f'[[flows]]\nname = "login"\nsteps = [{step}]\n')
    assert error.startswith("run-set.toml: flow #1 'login', step 1"), error
    assert message in error, error
    assert "\n" not in error


def test_step_errors_count_from_one(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        '[[flows]]\nname = "a"\ncommand = ["true"]\n'
        '[[flows]]\nname = "b"\nsteps = [{ goto = "/" }, { goto = "/x" }, { clik = "#a" }]\n',
    )
    assert error.startswith("run-set.toml: flow #2 'b', step 3: unknown step 'clik'")


def test_steps_list_itself(tmp_path: Path) -> None:
    assert "'steps' must not be empty" in load_error(
        tmp_path, '[[flows]]\nname = "a"\nsteps = []\n'
    )


def test_regex_fields_are_not_templates(tmp_path: Path) -> None:
    runset = load(
        tmp_path,
        '[[flows]]\nname = "a"\nsteps = [{ expect_text = "p", regex = "\\\\d{3}" }, '
        '{ expect_url = "/a{2}", regex = true }]\n',
    )
    assert runset.flows[0].steps[0]["expected"] == "\\d{3}"


# -- flows of each kind -------------------------------------------------------------------------


def test_kinds_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "shop.py").write_text(
        "def checkout(page, base_url):\n    pass\n\ndef plain(flow_dir, env):\n    pass\n"
    )
    (tmp_path / "login.toml").write_text(
        'base_url = "{base_url}/shop"\ntimeout = "45s"\nviewport = { width = 800, height = 600 }\n'
        'steps = [{ goto = "/login" }]\n'
    )
    runset = load(
        tmp_path,
        "[runset]\nviewport = { width = 1000, height = 700 }\n"
        '[[flows]]\nname = "inline"\nsteps = [{ goto = "/" }]\n'
        '[[flows]]\nname = "spec"\nspec = "login.toml"\n'
        '[[flows]]\nname = "spec with own timeout"\nspec = "login.toml"\ntimeout = 5\n'
        '[[flows]]\nname = "checkout"\ncallable = "flows.shop:checkout"\n'
        '[[flows]]\nname = "plain"\ncallable = "flows.shop:plain"\n'
        '[[flows]]\nname = "forced"\ncallable = "flows.shop:plain"\nbrowser = true\n',
    )
    inline, spec, own, checkout, plain, forced = runset.flows
    assert (inline.kind, inline.browser, inline.viewport) == ("steps", True, (1000, 700))
    assert (spec.kind, spec.spec, spec.base_url, spec.timeout_s) == (
        "steps",
        "login.toml",
        "{base_url}/shop",
        45.0,
    )
    assert spec.viewport == (800, 600)
    assert own.timeout_s == 5.0
    assert (checkout.kind, checkout.params, checkout.browser) == (
        "callable",
        ("page", "base_url"),
        True,
    )
    assert (plain.params, plain.browser, plain.viewport) == (("flow_dir", "env"), False, None)
    assert forced.browser is True
    assert runset.settings.browser_isolation == "context"


FLOW_ERRORS = [
    (
        'command = ["true"]\nsteps = [{ goto = "/" }]',
        "two kinds (command and steps)",
    ),
    ('steps = [{ goto = "/" }]\ncwd = "x"', "field 'cwd': only command and callable flows"),
    ('steps = [{ goto = "/" }]\nbrowser = false', "field 'browser': steps always run in a browser"),
    ('command = ["true"]\nbrowser = true', "field 'browser': command flows have no browser"),
    (
        'command = ["true"]\nviewport = { width = 1, height = 1 }',
        "field 'viewport': only browser flows have a viewport",
    ),
    (
        'steps = [{ goto = "/" }]\nviewport = { width = 0, height = 1 }',
        "field 'viewport.width': must be greater than 0",
    ),
    ('spec = "missing.toml"', "spec 'missing.toml': no such spec file"),
    ('callable = "nope"', "field 'callable': 'nope' is not a callable reference"),
    ('callable = "no_such_module_xyz:f"', "cannot find module 'no_such_module_xyz'"),
]


@pytest.mark.parametrize(("body", "message"), FLOW_ERRORS)
def test_bad_browser_flows(tmp_path: Path, body: str, message: str) -> None:
    error = load_error(tmp_path, f'[[flows]]\nname = "f"\n{body}\n')
    assert error.startswith("run-set.toml: flow #1 'f'"), error
    assert message in error, error


def test_runset_browser_isolation_is_checked(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[runset]\nbrowser_isolation = "thread"\n')
    assert "[runset], field 'browser_isolation'" in error
    assert "'context' or 'process'" in error


# -- spec files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps = [", "invalid TOML"),
        ('base_url = "x"', "field 'steps': required key is missing"),
        ('stpes = []\nsteps = [{ goto = "/" }]', "field 'stpes': unknown key (typo?)"),
        ('steps = [{ goto = "/" }, { fill = "#a" }]', "step 2 (fill \"#a\"): needs 'value'"),
        ('steps = [{ goto = "/" }]\nbase_url = 3', "field 'base_url': must be a string"),
        ('steps = [{ goto = "/" }]\nbase_url = "{nope}"', "unknown placeholder {nope}"),
        ('steps = [{ goto = "/" }]\ntimeout = 0', "field 'timeout': must be greater than 0"),
        ('steps = [{ goto = "/" }]\nviewport = { width = 5 }', "'viewport.height': required key"),
        (
            'steps = [{ goto = "/" }]\nviewport = { width = 5, height = 5, depth = 1 }',
            "'viewport.depth': unknown key",
        ),
    ],
)
def test_bad_spec_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=None) as info:
        load_spec(path)
    assert message in str(info.value)


def test_spec_file_errors_name_run_set_flow_and_spec(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "x.toml").write_text('steps = [{ goto = "/" }, { clik = "#a" }]\n')
    error = load_error(tmp_path, '[[flows]]\nname = "x"\nspec = "flows/x.toml"\n')
    assert error.startswith(
        "run-set.toml: flow #1 'x', spec 'flows/x.toml': step 2: unknown step 'clik'"
    )


def test_spec_steps_can_be_an_array_of_tables(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text('[[steps]]\ngoto = "/"\n[[steps]]\nclick = "#go"\ntimeout = 1\n')
    spec = load_spec(path)
    assert [step["action"] for step in spec.steps] == ["goto", "click"]


# -- callables ----------------------------------------------------------------------------------


def write_module(tmp_path: Path, source: str, name: str = "flows.py") -> None:
    (tmp_path / name).write_text(source, encoding="utf-8")


@pytest.mark.parametrize(
    ("source", "params"),
    [
        ("def f(page, flow, env): pass\n", ("page", "flow", "env")),
        ("def f(*, base_url, ports): pass\n", ("base_url", "ports")),
        ("def f(page, retries=3, *args, **kwargs): pass\n", ("page",)),
        ("def f(port=None): pass\n", ()),
        ("import functools\n@functools.lru_cache\ndef f(flow_dir): pass\n", ("flow_dir",)),
        ("from os import path as f\n", None),
        ("def g(): pass\nf = g\n", None),
    ],
)
def test_callable_parameters(tmp_path: Path, source: str, params: tuple[str, ...] | None) -> None:
    write_module(tmp_path, source)
    assert inspect_callable("flows:f", tmp_path).params == params


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(page, pge): pass\n", "unknown parameter 'pge'; a callable can ask for page"),
        ("def f(port): pass\n", "parameter 'port' is only known to flows that lease ports"),
        ("async def f(page): pass\n", "is 'async def'; write a plain 'def'"),
        ("def f(page, /): pass\n", "positional-only parameters"),
        ("def g(): pass\n", "module 'flows' has no function 'f'"),
        ("def f(:\n", "syntax error in flows.py line 1"),
    ],
)
def test_bad_callables(tmp_path: Path, source: str, message: str) -> None:
    write_module(tmp_path, source)
    with pytest.raises(CallableError) as info:
        inspect_callable("flows:f", tmp_path)
    assert message in str(info.value)


def test_callable_packages_are_found_without_importing(tmp_path: Path) -> None:
    package = tmp_path / "pkg" / "sub"
    package.mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("raise RuntimeError('imported!')\n")
    (package / "__init__.py").write_text("def f(page): pass\n")
    info = inspect_callable("pkg.sub:f", tmp_path)
    assert info.params == ("page",)


@pytest.mark.parametrize("reference", ["mod", "mod:", ":f", "a b:f", "mod:f.g", "mod:1f"])
def test_bad_references(reference: str) -> None:
    with pytest.raises(CallableError, match="is not a callable reference"):
        split_reference(reference)


def test_compiled_modules_are_checked_at_run_time(tmp_path: Path) -> None:
    # No source to read (a compiled extension): the parameters are checked when the flow runs.
    assert inspect_callable("_json:make_scanner", tmp_path).params is None


# -- finding a browser --------------------------------------------------------------------------


def test_system_chromium_lookup_order(tmp_path: Path) -> None:
    second = tmp_path / "chromium-browser"
    second.write_text("#!/bin/sh\n")
    second.chmod(0o755)
    not_executable = tmp_path / "google-chrome"
    not_executable.write_text("")
    names = {"chromium-browser": str(second), "google-chrome": str(not_executable)}
    found = find_system_chromium(("chromium", "chromium-browser", "google-chrome"), which=names.get)
    assert found == str(second)
    assert find_system_chromium(("chromium", str(tmp_path / "nope")), which=lambda _: None) is None


def test_resolve_executable(tmp_path: Path) -> None:
    exe = tmp_path / "chrome"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    managed = tmp_path / "managed"
    managed.write_text("")
    # An explicit executable wins; Playwright's own browser next; then a system Chromium.
    assert resolve_executable("chromium", str(exe), str(managed), lambda: None) == str(exe)
    assert resolve_executable("chromium", None, str(managed), lambda: "/x") is None
    assert resolve_executable("chromium", None, str(tmp_path / "gone"), lambda: "/x") == "/x"
    with pytest.raises(BrowserUnavailable, match="no browser found for browser flows"):
        resolve_executable("chromium", None, None, lambda: None)
    with pytest.raises(BrowserUnavailable, match="does not exist or is not executable"):
        resolve_executable("chromium", str(tmp_path / "missing"), None, lambda: "/x")
    with pytest.raises(BrowserUnavailable, match="python -m playwright install firefox"):
        resolve_executable("firefox", None, None, lambda: "/x")


def test_browser_unavailable_messages_are_one_line(tmp_path: Path) -> None:
    for call in (
        lambda: resolve_executable("chromium", None, None, lambda: None),
        lambda: resolve_executable("webkit", None, None, lambda: None),
        lambda: resolve_executable("chromium", "nope-not-on-path", None, lambda: None),
    ):
        with pytest.raises(BrowserUnavailable) as info:
            call()
        assert "\n" not in str(info.value)
        assert "install" in str(info.value)


def test_first_lines_drops_the_call_log() -> None:
    text = "Locator expected to have text 'A'\nActual value: B \nCall log:\n  - waiting\n"
    assert first_lines(text) == "Locator expected to have text 'A'; Actual value: B"
    assert len(first_lines("x" * 1000, 50)) == 50


# -- the pytest-runset command ------------------------------------------------------------------


def test_cli_lists_and_validates_browser_flows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from pytest_runset.cli import main

    (tmp_path / "flows.py").write_text("def buy(page, flow):\n    pass\n")
    path = tmp_path / "run-set.toml"
    path.write_text(
        '[[flows]]\nname = "steps"\nsteps = [{ goto = "/" }, { click = "#a" }]\n'
        '[[flows]]\nname = "buy"\ncallable = "flows:buy"\n'
    )
    assert main(["list", "--json", str(path)]) == 0
    flows = json.loads(capsys.readouterr().out)
    assert [(f["kind"], f["steps"], f["callable"], f["browser"]) for f in flows] == [
        ("steps", 2, None, True),
        ("callable", 0, "flows:buy", True),
    ]
    path.write_text('[[flows]]\nname = "steps"\nsteps = [{ click = "#a", valeu = "x" }]\n')
    assert main(["validate", str(path)]) == 4
    err = capsys.readouterr().err
    assert "flow #1 'steps', step 1 (click \"#a\"): 'valeu': unknown key (typo?)" in err


# -- the step runner's helpers ------------------------------------------------------------------


def test_step_urls_and_paths(tmp_path: Path) -> None:
    from pytest_runset.gateway.runners.steps import StepProblem, _absolute, _screenshot_name

    assert _absolute("/items", "http://127.0.0.1:8000") == "http://127.0.0.1:8000/items"
    assert _absolute("http://other/x", "http://127.0.0.1:8000") == "http://other/x"
    with pytest.raises(StepProblem, match="needs a base URL"):
        _absolute("/items", "")
    # Screenshots are written through the flow directory's own handle: a name may not leave it.
    assert _screenshot_name("a/b.png") == "a/b.png"
    for name in ("../x.png", "/tmp/x.png"):
        with pytest.raises(StepProblem, match="outside the flow directory"):
            _screenshot_name(name)


def test_step_waits_are_bounded_by_the_flow(tmp_path: Path) -> None:
    from pytest_runset.gateway.runners import Control
    from pytest_runset.gateway.runners.steps import _timeout_ms

    long = Control(600)
    assert _timeout_ms({"action": "click", "timeout_s": None}, long) == (30000.0, False)
    assert _timeout_ms({"action": "expect_text", "timeout_s": None}, long) == (5000.0, False)
    assert _timeout_ms({"action": "click", "timeout_s": 0.5}, long) == (500.0, False)
    short = Control(2)
    wait, clamped = _timeout_ms({"action": "wait_for", "timeout_s": 3600.0}, short)
    assert clamped
    assert 1000 < wait <= 2000

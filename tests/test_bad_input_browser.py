"""Bad browser flows and options end the session with exit code 4 and one line naming the file,
the flow and the step (or field); never a traceback. Run as a user would, in a subprocess."""

from __future__ import annotations

import pytest
from test_bad_input import assert_usage_error, flow, run

CASES = [
    pytest.param(
        flow('steps = [{ goto = "/" }, { clik = "#pay" }]', "checkout"),
        ["run-set.toml: flow #1 'checkout', step 2: unknown step 'clik' (typo?)"],
        id="unknown-step",
    ),
    pytest.param(
        flow('steps = [{ fill = "#user" }]'),
        ["flow #1 'f', step 1 (fill \"#user\"): needs 'value'"],
        id="fill-without-value",
    ),
    pytest.param(
        flow('steps = [{ goto = "/" }, { goto = "/a" }, { press = "#q" }]'),
        ["flow #1 'f', step 3 (press \"#q\"): needs 'key'"],
        id="press-without-key",
    ),
    pytest.param(
        flow('steps = [{ expect_text = "h1" }]'),
        ["step 1 (expect_text \"h1\"): needs exactly one of 'text', 'contains' or 'regex'"],
        id="expect-text-without-text",
    ),
    pytest.param(
        flow('steps = [{ expect_text = "h1", regex = "a(" }]'),
        ["step 1 (expect_text \"h1\"): bad regex 'a(': missing ), unterminated subpattern"],
        id="bad-regex",
    ),
    pytest.param(
        flow('steps = [{ expect_url = "/items[", regex = true }]'),
        ['step 1 (expect_url "/items["): bad regex'],
        id="bad-url-regex",
    ),
    pytest.param(
        flow('steps = [{ fill = "#user", value = "{user}" }]'),
        ["flow #1 'f', step 1 (fill \"#user\"): 'value': unknown placeholder {user}"],
        id="unknown-placeholder-in-step",
    ),
    pytest.param(
        flow('steps = ["click #pay"]'),
        ["flow #1 'f', step 1: must be a table like { click = \"#id\" }, not a string"],
        id="step-not-a-table",
    ),
    pytest.param(
        flow('steps = [{ click = "#a", valeu = "x" }]'),
        ["step 1 (click \"#a\"): 'valeu': unknown key (typo?)"],
        id="unknown-step-key",
    ),
    pytest.param(
        flow('steps = [{ wait_for = "#a", timeout = "soon" }]'),
        ["step 1 (wait_for \"#a\"): 'timeout': 'soon' is not a duration"],
        id="bad-step-timeout",
    ),
    pytest.param(
        flow('spec = "flows/missing.toml"', "login"),
        ["flow #1 'login', spec 'flows/missing.toml': no such spec file"],
        id="missing-spec-file",
    ),
    pytest.param(
        flow('steps = [{ goto = "/" }]\ncallable = "flows:f"'),
        ["flow #1 'f'", "two kinds (steps and callable)"],
        id="two-kinds",
    ),
    pytest.param(
        flow('callable = "no_such_flows_module:checkout"'),
        ["flow #1 'f', field 'callable': cannot find module 'no_such_flows_module'"],
        id="callable-module-missing",
    ),
    pytest.param(
        '[runset]\nbrowser_isolation = "tab"\n',
        ["[runset], field 'browser_isolation'", "'context' or 'process'"],
        id="bad-isolation",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), CASES)
def test_bad_browser_flow(pytester: pytest.Pytester, text: str, fragments: list[str]) -> None:
    pytester.makefile(".toml", **{"run-set": text})
    assert_usage_error(run(pytester, "--runset", "run-set.toml"), fragments)


def test_bad_step_in_spec_file(pytester: pytest.Pytester) -> None:
    (pytester.path / "flows").mkdir()
    (pytester.path / "flows" / "pay.toml").write_text(
        'steps = [{ goto = "/" }, { expect_title = "x", regex = "yes" }]\n', encoding="utf-8"
    )
    pytester.makefile(".toml", **{"run-set": flow('spec = "flows/pay.toml"', "pay")})
    assert_usage_error(
        run(pytester, "--runset", "run-set.toml"),
        [
            "run-set.toml: flow #1 'pay', spec 'flows/pay.toml': step 2 (expect_title \"x\"):",
            "'regex' must be a boolean",
        ],
    )


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        (
            "def checkout(page, cart):\n    pass\n",
            ["field 'callable': flows:checkout: unknown parameter 'cart'"],
        ),
        ("async def checkout(page):\n    pass\n", ["flows:checkout is 'async def'"]),
        ("def other(page):\n    pass\n", ["module 'flows' has no function 'checkout'"]),
    ],
)
def test_bad_callable(pytester: pytest.Pytester, source: str, fragments: list[str]) -> None:
    (pytester.path / "flows.py").write_text(source, encoding="utf-8")
    pytester.makefile(".toml", **{"run-set": flow('callable = "flows:checkout"', "buy")})
    assert_usage_error(run(pytester, "--runset", "run-set.toml"), ["flow #1 'buy'", *fragments])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--runset-trace", "always"),
        ("--runset-screenshot", "sometimes"),
        ("--runset-video", "yes"),
        ("--runset-browser", "edge"),
    ],
)
def test_bad_browser_option(pytester: pytest.Pytester, option: str, value: str) -> None:
    pytester.makefile(".toml", **{"run-set": flow('command = ["true"]')})
    result = run(pytester, "--runset", "run-set.toml", option, value)
    assert_usage_error(result, [option, f"invalid choice: '{value}'"])

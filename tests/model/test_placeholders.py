"""``{...}`` placeholders: load-time checks and dispatch-time substitution (plain text, never
``str.format``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_runset.model.placeholders import (
    SIMPLE_NAMES,
    PlaceholderError,
    check_name,
    check_template,
    placeholder_names,
    substitute,
)

VALUES = {
    "slot": "0",
    "flow_dir": "/runs/r1/login",
    "run_dir": "/runs/r1",
    "run_id": "r1",
    "slug": "login",
    "name": "Login Flow",
    "base_url": "http://127.0.0.1:8000",
    "attempt": "1",
    "port": "20001",
    "ports[0]": "20001",
    "ports[1]": "20002",
}
ENV = {"HOME": "/home/u", "EMPTY": ""}


# --- tokenizing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "names"),
    [
        ("", []),
        ("plain text", []),
        ("{slug}", ["slug"]),
        ("a {slug} b {run_id}", ["slug", "run_id"]),
        ("{env.HOME}/x", ["env.HOME"]),
        ("{{slug}}", []),
        ("{{{slug}}}", ["slug"]),
        ("}}{{", []),
        ("{ports[1]}:{port}", ["ports[1]", "port"]),
        ("{slug}{slug}", ["slug", "slug"]),
    ],
)
def test_placeholder_names(template: str, names: list[str]) -> None:
    assert placeholder_names(template) == names


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{", "{"),
        ("}}", "}"),
        ("{{slug}}", "{slug}"),
        ("{{{slug}}}", "{login}"),
        ("a{{b}}c", "a{b}c"),
        ('{{"json": {{"k": 1}}}}', '{"json": {"k": 1}}'),
        ("awk '{{print $1}}'", "awk '{print $1}'"),
    ],
)
def test_doubled_braces_are_literal(template: str, expected: str) -> None:
    check_template(template)
    assert substitute(template, VALUES, ENV) == expected


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{slug", "unclosed '{' at position 0"),
        ("abc {", "unclosed '{' at position 4"),
        ("slug}", "single '}' at position 4"),
        ("{slug}}", "single '}' at position 6"),
        ("{{slug}", "single '}' at position 6"),
        ("{}", "malformed placeholder at position 0"),
        ("x{ }", "malformed placeholder at position 1"),
        ("{a{b}", "malformed placeholder at position 0"),
    ],
)
def test_unbalanced_or_malformed_braces(template: str, fragment: str) -> None:
    with pytest.raises(PlaceholderError) as excinfo:
        placeholder_names(template)
    assert fragment in str(excinfo.value)
    # the same problem surfaces from the load-time check and from substitution
    with pytest.raises(PlaceholderError):
        check_template(template, ports=2)
    with pytest.raises(PlaceholderError):
        substitute(template, VALUES, ENV)


def test_placeholder_error_is_a_value_error() -> None:
    assert issubclass(PlaceholderError, ValueError)


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SIMPLE_NAMES))
def test_simple_names_are_known_without_ports(name: str) -> None:
    check_name(name, ports=0)
    check_template("x{" + name + "}y")


def test_documented_simple_names_are_known() -> None:
    documented = {"slot", "flow_dir", "run_dir", "run_id", "slug", "name", "base_url"}
    assert documented <= SIMPLE_NAMES


@pytest.mark.parametrize("name", ["env.HOME", "env.A", "env._X1", "env.lower_case"])
def test_env_names_are_known(name: str) -> None:
    check_name(name, ports=0)


@pytest.mark.parametrize(
    "name",
    [
        "nope",
        "0",
        "1",
        "name.__class__",
        "name.__class__.__mro__",
        "slug!r",
        "slug:>10",
        "slug[0]",
        "__import__",
        "env",
        "env.",
        "env.1X",
        "env.A.B",
        "env.A-B",
        "ENV.HOME",
        "SLUG",
        "ports",
        "ports[-1]",
        "ports[x]",
        "port.x",
    ],
)
def test_unknown_names(name: str) -> None:
    with pytest.raises(PlaceholderError) as excinfo:
        check_name(name, ports=4)
    assert str(excinfo.value) == "unknown placeholder {" + name + "}"
    with pytest.raises(PlaceholderError, match="unknown placeholder"):
        check_template("a {" + name + "} b", ports=4)


def test_no_str_format_semantics() -> None:
    # What str.format would resolve, or crash on, is just an unknown name here.
    for template in ("{name.__class__}", "{0}", "{name!r}", "{name:>20}", "{name[0]}"):
        with pytest.raises(PlaceholderError, match="unknown placeholder"):
            check_template(template)
        with pytest.raises(PlaceholderError, match="has no value"):
            substitute(template, {"name": "x"}, {})


def test_persona_and_service_names_need_their_context() -> None:
    with pytest.raises(PlaceholderError, match="needs a persona"):
        check_template("{persona.username}")
    with pytest.raises(PlaceholderError, match="has no field 'password'"):
        check_template("{persona.password}", persona_fields=frozenset({"username"}))
    check_template("{persona.username}", persona_fields=frozenset({"username"}))
    with pytest.raises(PlaceholderError, match="no service named 'app'"):
        check_template("{services.app.port}")
    with pytest.raises(PlaceholderError, match="out of range"):
        check_template("{services.app.ports[1]}", services={"app": 1})
    check_template("http://127.0.0.1:{services.app.port}/", services={"app": 1})
    with pytest.raises(PlaceholderError, match="only known to leased ports"):
        check_template("{sidecar.port}")
    check_template("{sidecar.port}", sidecar_ports=1)


def test_port_needs_leased_ports() -> None:
    with pytest.raises(PlaceholderError) as excinfo:
        check_template("--port={port}")
    assert str(excinfo.value) == "placeholder {port} is only known to flows that lease ports"
    with pytest.raises(PlaceholderError, match="only known to flows that lease ports"):
        check_template("{ports[0]}", ports=0)
    check_template("--port={port}", ports=1)
    check_template("{ports[0]}", ports=1)


@pytest.mark.parametrize(("index", "ports"), [(1, 1), (2, 2), (5, 3)])
def test_port_index_out_of_range(index: int, ports: int) -> None:
    with pytest.raises(PlaceholderError) as excinfo:
        check_template(f"{{ports[{index}]}}", ports=ports)
    message = str(excinfo.value)
    assert f"{{ports[{index}]}}" in message
    assert "out of range" in message
    assert f"leases {ports} port" in message


@pytest.mark.parametrize(("index", "ports"), [(0, 1), (1, 2), (2, 3), (9, 10)])
def test_port_index_in_range(index: int, ports: int) -> None:
    check_template(f"{{ports[{index}]}}", ports=ports)


def test_messages_are_one_line() -> None:
    for template in ("{a\nb}", "{x\r\ny}", "{a\u2028b}"):
        with pytest.raises(PlaceholderError) as excinfo:
            check_template(template)
        message = str(excinfo.value)
        assert len(message.splitlines()) == 1
        assert message.startswith("unknown placeholder {")
    with pytest.raises(PlaceholderError) as excinfo:
        check_template("{a\nb}")
    assert "{a\\nb}" in str(excinfo.value)


# --- substitute ------------------------------------------------------------------------------


def test_substitute_replaces_values() -> None:
    template = "{base_url}/login?run={run_id}&slot={slot} -> {flow_dir}/{slug}.log ({name})"
    assert substitute(template, VALUES, ENV) == (
        "http://127.0.0.1:8000/login?run=r1&slot=0 -> /runs/r1/login/login.log (Login Flow)"
    )


def test_substitute_ports() -> None:
    assert substitute("{port} {ports[0]} {ports[1]}", VALUES, ENV) == "20001 20001 20002"


def test_substitute_env() -> None:
    assert substitute("{env.HOME}/.cache", VALUES, ENV) == "/home/u/.cache"
    assert substitute("[{env.EMPTY}]", VALUES, ENV) == "[]"


def test_substitute_missing_env_var_names_it() -> None:
    with pytest.raises(PlaceholderError) as excinfo:
        substitute("{env.NOT_SET_ANYWHERE}", VALUES, ENV)
    assert str(excinfo.value) == (
        "placeholder {env.NOT_SET_ANYWHERE}: environment variable NOT_SET_ANYWHERE is not set"
    )


def test_substitute_missing_value_names_it() -> None:
    with pytest.raises(PlaceholderError) as excinfo:
        substitute("{port}", {"slug": "x"}, {})
    assert str(excinfo.value) == "placeholder {port} has no value for this flow"


def test_substitute_is_not_recursive() -> None:
    values = {"slug": "{run_id}", "name": "{{x}}", "run_id": "r1"}
    assert substitute("{slug} {name}", values, {"A": "{slug}"}) == "{run_id} {{x}}"
    assert substitute("{env.A}", values, {"A": "{slug}"}) == "{slug}"


def test_substitute_leaves_text_without_placeholders_alone() -> None:
    text = "echo 'no braces here' && ls -la $HOME % %s %(x)s"
    assert substitute(text, {}, {}) == text


# --- properties ------------------------------------------------------------------------------


def escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@settings(max_examples=300)
@given(text=st.text())
def test_property_escaped_text_round_trips(text: str) -> None:
    escaped = escape(text)
    assert placeholder_names(escaped) == []
    check_template(escaped)
    assert substitute(escaped, {}, {}) == text


@settings(max_examples=300)
@given(
    parts=st.lists(
        st.one_of(
            st.text().map(lambda t: ("text", t)),
            st.sampled_from(sorted(VALUES)).map(lambda n: ("name", n)),
        ),
        max_size=8,
    ),
    value=st.text(),
)
def test_property_substitution_is_plain_replacement(
    parts: list[tuple[str, str]], value: str
) -> None:
    values = dict.fromkeys(VALUES, value)
    template = "".join(escape(p) if kind == "text" else "{" + p + "}" for kind, p in parts)
    expected = "".join(p if kind == "text" else value for kind, p in parts)
    assert substitute(template, values, {}) == expected
    assert placeholder_names(template) == [p for kind, p in parts if kind == "name"]

"""Gateway specs: the N* multiplier, hosts shown in worker ids, proxies, and bad specs."""

from __future__ import annotations

import pytest

from pytest_runset.model.txspec import (
    GatewaySpec,
    TxSpecError,
    is_loopback,
    non_loopback_sockets,
    parse_proxies,
    parse_tx,
)


def tx(*values: str, px: tuple[str, ...] = ()) -> list[GatewaySpec]:
    return parse_tx(list(values), parse_proxies(list(px)), source="--runset-tx")


def test_a_multiplier_repeats_the_spec() -> None:
    gateways = tx("4*popen")
    assert [g.spec for g in gateways] == ["popen"] * 4
    assert all(g.host is None and not g.remote for g in gateways)


def test_ssh_specs_show_their_host_without_user_and_are_remote() -> None:
    gateways = tx("2*ssh=build-2//python=/opt/venv/bin/python//chdir=/srv/work", "ssh=ci@build-3")
    assert [g.host for g in gateways] == ["build-2", "build-2", "build-3"]
    assert all(g.remote for g in gateways)
    assert gateways[0].spec == "ssh=build-2//python=/opt/venv/bin/python//chdir=/srv/work"
    assert gateways[0].kind == "ssh"


def test_ssh_options_before_the_host_are_kept_and_the_host_is_the_last_word() -> None:
    (gateway,) = tx("ssh=-p 2222 ci@build-4")
    assert gateway.host == "build-4"


def test_socket_specs_show_their_host() -> None:
    (gateway,) = tx("socket=10.1.2.3:8888")
    assert gateway.host == "10.1.2.3"
    assert gateway.remote
    assert gateway.kind == "socket"


def test_via_takes_the_proxy_host_and_installvia_runs_on_the_proxy() -> None:
    gateways = tx(
        "popen//via=jump",
        "popen//via=here",
        "socket//installvia=here",
        px=("ssh=jumphost//id=jump", "popen//id=here"),
    )
    assert [(g.host, g.remote) for g in gateways] == [
        ("jumphost", True),
        (None, False),
        ("localhost", True),
    ]
    (inner,) = tx("ssh=inner-host//via=jump", px=("ssh=jumphost//id=jump",))
    assert (inner.host, inner.remote) == ("inner-host", True)


def test_proxies_without_an_id_are_numbered() -> None:
    proxies = parse_proxies(["popen", "ssh=h//id=hop"])
    assert sorted(proxies) == ["hop", "px0"]
    assert proxies["px0"].spec == "popen//id=px0"
    assert proxies["hop"].host == "h"


def test_env_keys_are_allowed() -> None:
    (gateway,) = tx("popen//env:RUNSET_TEST_FAKE_VERSION=1.2.3//env:OTHER=x")
    assert gateway.spec.endswith("env:OTHER=x")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "empty gateway spec"),
        ("bogus", "unknown key 'bogus'"),
        ("popen//nope=1", "unknown key 'nope'"),
        ("popen//id=gw9", "'id' is chosen by pytest-runset"),
        ("popen//ssh=host", "needs exactly one of popen"),
        ("python=/usr/bin/python3", "needs exactly one of popen"),
        ("ssh", "ssh needs a host"),
        ("socket", "socket needs HOST:PORT"),
        ("socket=hostonly", "socket address must be HOST:PORT"),
        ("socket=host:port", "socket address must be HOST:PORT"),
        ("socket=h:1//python=/x", "cannot take python="),
        ("socket=h:1//via=p", "via= works with popen and ssh"),
        ("popen//installvia=p", "installvia= works with socket only"),
        ("popen//via", "via= needs a proxy id"),
        ("popen//via=missing", "no --runset-px gateway with id 'missing'"),
        ("0*popen", "the multiplier must be at least 1"),
        ("popen//popen", "duplicate key"),
        ("popen//env:=x", "'env:' needs a variable name"),
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_spec(value: str, problem: str) -> None:
    with pytest.raises(TxSpecError) as caught:
        tx(value)
    message = str(caught.value)
    assert problem in message
    assert "\n" not in message
    assert message.startswith("--runset-tx")


def test_too_many_gateways_are_refused() -> None:
    with pytest.raises(TxSpecError, match="more than 256 gateways"):
        tx("300*popen")


def test_a_proxy_cannot_go_via_another() -> None:
    with pytest.raises(TxSpecError, match="cannot itself go via"):
        parse_proxies(["popen//via=x"])
    with pytest.raises(TxSpecError, match="given twice"):
        parse_proxies(["popen//id=a", "popen//id=a"])


def test_the_form_alone_is_checked_without_proxies() -> None:
    # A run-set file cannot know the command line's proxies: only the form is checked there.
    (gateway,) = parse_tx(["popen//via=later"], None, source="tx")
    assert gateway.spec == "popen//via=later"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("localhost", True),
        ("::1", True),
        ("192.0.2.1", False),
        ("build-2", False),
        ("0.0.0.0", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_only_sockets_beyond_loopback_are_listed_for_a_warning() -> None:
    gateways = tx("socket=192.0.2.1:8888", "socket=127.0.0.1:8888", "ssh=build-2", "popen")
    assert non_loopback_sockets(gateways) == ["socket=192.0.2.1:8888"]

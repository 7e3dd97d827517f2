"""The coordinator's URL, its security checks and its connection (a real redis-server)."""

from __future__ import annotations

import sys
import time

import pytest
from redis_support import RedisServer, redis_server, tls_redis_server

from pytest_runset.resources.coordinator import (
    KEY_TTL_S,
    CoordinatorError,
    connect,
    heartbeat_ttl,
    key,
    parse_url,
)

__all__ = ["redis_server", "tls_redis_server"]


def test_a_password_never_shows_in_what_messages_print() -> None:
    url = parse_url("redis://:hunter22@10.0.0.5:6380/1")
    assert (url.host, url.port, url.tls, url.has_password) == ("10.0.0.5", 6380, False, True)
    assert "hunter22" not in url.shown
    assert url.shown == "redis://:***@10.0.0.5:6380/1"


@pytest.mark.parametrize(
    ("raw", "warned"),
    [
        ("redis://127.0.0.1:6379", False),
        ("redis://localhost", False),
        ("redis://[::1]:6379", False),
        ("rediss://redis.example.com:6380", False),
        ("redis://redis.example.com:6379", True),
        ("redis://10.1.2.3", True),
    ],
)
def test_a_url_neither_loopback_nor_tls_is_warned_about(raw: str, warned: bool) -> None:
    warning = parse_url(raw).warning()
    assert (warning is not None) == warned
    if warning:
        assert "rediss://" in warning


@pytest.mark.parametrize("raw", ["http://host", "host:6379", "redis://"])
def test_a_url_that_is_not_redis_is_one_line(raw: str) -> None:
    with pytest.raises(CoordinatorError) as caught:
        parse_url(raw)
    assert "\n" not in str(caught.value)


def test_keys_are_namespaced() -> None:
    assert key("queue", "ci-1", "meta") == "runset:queue:ci-1:meta"


def test_the_heartbeat_ttl_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSET_COORDINATOR_TTL", "3")
    assert heartbeat_ttl() == 3.0
    monkeypatch.setenv("RUNSET_COORDINATOR_TTL", "soon")
    with pytest.raises(CoordinatorError, match="expected seconds"):
        heartbeat_ttl()
    monkeypatch.setenv("RUNSET_COORDINATOR_TTL", str(KEY_TTL_S * 2))
    with pytest.raises(CoordinatorError, match=r"0\.5 to"):
        heartbeat_ttl()


def test_an_unreachable_coordinator_is_one_line_without_its_password() -> None:
    with pytest.raises(CoordinatorError) as caught:
        connect(parse_url("redis://:pw-secret-1@127.0.0.1:1/0"), ttl=1.0)
    message = str(caught.value)
    assert message.startswith("coordinator redis://:***@127.0.0.1:1/0 unreachable")
    assert "pw-secret-1" not in message
    assert "\n" not in message


def test_a_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(CoordinatorError, match=r"redis-py is not installed \(pip install redis"):
        connect(parse_url("redis://127.0.0.1:6379"), ttl=1.0)


def test_the_password_comes_from_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_server.stop()
    redis_server.password = "from-env-pw"
    redis_server.start()
    url = parse_url(redis_server.url)
    monkeypatch.delenv("RUNSET_COORDINATOR_PASSWORD", raising=False)
    with pytest.raises(CoordinatorError) as caught:
        connect(url, ttl=1.0)
    assert "from-env-pw" not in str(caught.value)
    monkeypatch.setenv("RUNSET_COORDINATOR_PASSWORD", "from-env-pw")
    coordinator = connect(url, ttl=1.0)
    try:
        assert coordinator.client.ping()
    finally:
        coordinator.close()


def test_a_failing_heartbeat_is_told_to_the_loop_not_raised(redis_server: RedisServer) -> None:
    coordinator = connect(parse_url(redis_server.url), ttl=0.6)
    try:
        redis_server.stop()
        coordinator.add_renewer(coordinator.client.ping)
        deadline = time.monotonic() + 10
        while coordinator.problem is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert coordinator.problem is not None
        assert coordinator.problem.startswith(f"coordinator {redis_server.url} unreachable")
    finally:
        coordinator.close()


def test_rediss_speaks_tls_to_a_server_whose_certificate_it_verifies(
    tls_redis_server: RedisServer,
) -> None:
    """``rediss://`` with the server's CA (redis-py's ``ssl_ca_certs`` query parameter): a
    working, warning-free connection. The server listens on TLS only."""
    url = parse_url(tls_redis_server.url)
    assert url.tls
    assert url.warning() is None
    coordinator = connect(url, ttl=1.0)
    try:
        coordinator.client.set(key("probe"), "1", ex=10)
        assert coordinator.client.get(key("probe")) == "1"
    finally:
        coordinator.close()


def test_a_certificate_that_cannot_be_verified_is_one_line(tls_redis_server: RedisServer) -> None:
    """Without the CA the certificate does not verify (no silent fallback to no checks), and
    plain ``redis://`` to the TLS port fails too: each is one line naming the coordinator."""
    untrusted = f"rediss://127.0.0.1:{tls_redis_server.port}/0"
    with pytest.raises(CoordinatorError) as caught:
        connect(parse_url(untrusted), ttl=1.0)
    assert "certificate verify failed" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(CoordinatorError) as caught:
        connect(parse_url(f"redis://127.0.0.1:{tls_redis_server.port}/0"), ttl=1.0)
    assert str(caught.value).startswith(f"coordinator redis://127.0.0.1:{tls_redis_server.port}")

"""Run-wide services: real servers started, probed, watched and stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import process_alive, processes_with_cookie_prefix, wait_for
from pytest_runset.model.schema import ServiceSpec
from pytest_runset.resources.services import ServiceError, Services

# Writes its environment to <argv[2]>, says hello, then accepts on 127.0.0.1:<argv[1]>.
ENV_SERVER = r"""
import json, os, socket, sys
with open(sys.argv[2] + ".tmp", "w") as handle:
    json.dump(dict(os.environ), handle)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
print("hello from", os.environ["RUNSET_SERVICE"], flush=True)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
while True:
    conn, _ = server.accept()
    conn.close()
"""


def lease_free_ports(count: int) -> list[int]:
    """Distinct free ports: all are bound at once before any is released."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def spec(**fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate(fields)


@pytest.fixture
def run_id() -> Iterator[str]:
    value = f"rs-test-services-{uuid.uuid4().hex[:12]}"
    yield value
    # Cleanup only: whatever a failing test left behind.
    for pid in processes_with_cookie_prefix(f"{value}.service."):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def make_services(run_id: str, tmp_path: Path) -> Iterator[Callable[..., Services]]:
    made: list[Services] = []

    def make(specs: list[ServiceSpec], *, grace: float = 5.0) -> Services:
        services = Services(
            specs,
            run_dir=tmp_path / "run",
            run_id=run_id,
            base_dir=tmp_path,
            base_env={**os.environ, "FROM_BASE": "base-value"},
            default_grace_s=grace,
            lease_ports=lease_free_ports,
        )
        made.append(services)
        return services

    yield make
    for services in made:
        services.stop()


def test_two_services_start_in_order_and_stop_clean(
    make_services: Callable[..., Services], run_id: str, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("served by app", encoding="utf-8")
    web = spec(
        name="web",
        command=["{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
        cwd="www",  # relative to the run-set's directory
        ready="http://127.0.0.1:{port}/",
    )
    probe = spec(
        name="probe",
        command=["{python}", "-c", ENV_SERVER, "{ports[1]}", "{run_dir}/probe-env.json"],
        ports=2,
        env={"GREETING": "hi-{name}-{port}", "BASE_SEEN": "{env.FROM_BASE}"},
        ready="tcp://127.0.0.1:{ports[1]}",
        ready_log="^hello from probe$",
    )
    services = make_services([web, probe])
    services.start()

    ports = services.ports()
    assert list(ports) == ["web", "probe"]
    assert len(ports["web"]) == 1
    assert len(ports["probe"]) == 2
    web_port = ports["web"][0]
    probe_ports = ports["probe"]
    assert services.placeholder_values() == {
        "services.web.port": str(web_port),
        "services.web.ports[0]": str(web_port),
        "services.probe.port": str(probe_ports[0]),
        "services.probe.ports[0]": str(probe_ports[0]),
        "services.probe.ports[1]": str(probe_ports[1]),
    }

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{web_port}/", timeout=30) as response:
        assert response.read() == b"served by app"

    run_dir = tmp_path / "run"
    env = json.loads((run_dir / "probe-env.json").read_text(encoding="utf-8"))
    assert env["RUNSET_RUN_ID"] == run_id
    assert env["RUNSET_RUN_DIR"] == str(run_dir)
    assert env["RUNSET_SERVICE"] == "probe"
    assert env["RUNSET_PORT"] == str(probe_ports[0])
    assert env["RUNSET_PORTS"] == f"{probe_ports[0]},{probe_ports[1]}"
    assert env["RUNSET_FLOW_ID"] == f"{run_id}.service.probe"
    assert env["GREETING"] == f"hi-probe-{probe_ports[0]}"
    assert env["BASE_SEEN"] == "base-value"
    assert env["FROM_BASE"] == "base-value"

    logs = run_dir / "services"
    assert wait_for(lambda: '"GET / HTTP/1.1" 200' in (logs / "web.log").read_text("utf-8"), 30)
    assert (logs / "probe.log").read_text("utf-8") == "hello from probe\n"

    prefix = f"{run_id}.service."
    assert len(processes_with_cookie_prefix(prefix)) == 2
    assert services.check_alive() is None

    services.stop()
    assert processes_with_cookie_prefix(prefix) == []
    services.stop()  # idempotent
    assert services.check_alive() is None


def test_check_alive_reports_a_dead_service_with_its_log(
    make_services: Callable[..., Services], run_id: str
) -> None:
    services = make_services(
        [
            spec(
                name="svc",
                command="echo 'svc says hi'; exec sleep 600",
                shell=True,
                ports=0,
                ready_log="svc says",
            )
        ]
    )
    services.start()
    assert services.check_alive() is None
    (service,) = services.running()
    os.kill(service.proc.pid, signal.SIGKILL)
    assert wait_for(lambda: services.check_alive() is not None, 30)
    error = services.check_alive()
    assert isinstance(error, ServiceError)
    assert error.name == "svc"
    lines = str(error).splitlines()
    assert lines[0] == (
        "service 'svc' was killed by SIGKILL after it was ready; last lines of services/svc.log:"
    )
    assert lines[1:] == ["svc says hi"]
    services.stop()
    assert processes_with_cookie_prefix(f"{run_id}.service.") == []


def test_a_service_never_ready_stops_the_ones_already_started(
    make_services: Callable[..., Services], run_id: str
) -> None:
    first = spec(name="first", command=["sleep", "600"], ports=0)
    slow = spec(
        name="slow",
        command="echo warming up; sleep 600",
        shell=True,
        ready="tcp://127.0.0.1:{port}",
        ready_timeout=1,
    )
    services = make_services([first, slow])
    with pytest.raises(ServiceError) as caught:
        services.start()
    port = services.ports()["slow"][0]
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"service 'slow' not ready after 1s (tcp://127.0.0.1:{port}: ")
    assert lines[0].endswith("; last lines of services/slow.log:")
    assert lines[1:] == ["warming up"]
    assert not caught.value.cancelled
    assert services.running() == []
    assert wait_for(lambda: not processes_with_cookie_prefix(f"{run_id}.service."), 30)


def test_a_service_that_ignores_sigterm_is_killed_after_its_grace(
    make_services: Callable[..., Services], run_id: str
) -> None:
    stubborn = spec(
        name="stubborn",
        command="trap '' TERM; echo up; sleep 600 & sleep 600",
        shell=True,
        ports=0,
        ready_log="up",
        kill_grace=0.3,
    )
    services = make_services([stubborn], grace=600)  # the service's own grace wins
    services.start()
    prefix = f"{run_id}.service."
    assert wait_for(lambda: len(processes_with_cookie_prefix(prefix)) == 3, 30)
    (service,) = services.running()
    assert service.grace_s == 0.3
    services.stop()
    assert service.proc.returncode == -signal.SIGKILL
    assert wait_for(lambda: not processes_with_cookie_prefix(prefix), 30)


def test_start_failures_name_the_service(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    missing = make_services([spec(name="ghost", command=["no-such-program-rs"], ports=0)])
    with pytest.raises(ServiceError) as caught:
        missing.start()
    assert str(caught.value).startswith("service 'ghost' cannot start 'no-such-program-rs': ")
    assert str(caught.value).endswith("services/ghost.log is empty")

    crashing = make_services(
        [spec(name="crash", command="echo oops >&2; exit 3", shell=True, ready_log="never")]
    )
    with pytest.raises(ServiceError) as caught:
        crashing.start()
    assert str(caught.value) == (
        "service 'crash' exited with code 3 before it was ready; "
        "last lines of services/crash.log:\noops"
    )

    unset = make_services(
        [spec(name="cfg", command=["sleep", "600"], env={"X": "{env.RS_TEST_SURELY_UNSET}"})]
    )
    with pytest.raises(
        ServiceError, match=r"^service 'cfg' cannot be configured: .*RS_TEST_SURELY_UNSET"
    ):
        unset.start()
    assert not (tmp_path / "run" / "services" / "cfg.log").exists()


def test_cancelled_start_is_flagged(make_services: Callable[..., Services], run_id: str) -> None:
    services = make_services(
        [spec(name="waits", command=["sleep", "600"], ready="tcp://127.0.0.1:{port}")]
    )
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        with pytest.raises(ServiceError) as caught:
            services.start(cancelled=stop.is_set)
    finally:
        timer.cancel()
    assert caught.value.cancelled
    assert caught.value.summary.startswith("service 'waits' was cancelled before it was ready")
    assert wait_for(lambda: not processes_with_cookie_prefix(f"{run_id}.service."), 30)


def test_a_service_can_use_another_services_port(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    services = make_services(
        [
            spec(name="db", command=["sleep", "600"]),
            spec(
                name="app",
                command="echo db-at-{services.db.port} >&2; exec sleep 600",
                shell=True,
                ports=0,
                ready_log="db-at-[0-9]+",
            ),
        ]
    )
    services.start()
    db_port = services.ports()["db"][0]
    log = tmp_path / "run" / "services" / "app.log"
    assert log.read_text("utf-8") == f"db-at-{db_port}\n"
    assert all(process_alive(s.proc.pid) for s in services.running())

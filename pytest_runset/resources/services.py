"""``[[runset.services]]``: helpers started once before the first flow, stopped after the last.

Controller side. Each service runs in a session of its own, logs to
``<run_dir>/services/<name>.log`` and carries the cookie ``RUNSET_FLOW_ID=<run_id>.service.<name>``
so that stopping it also kills whatever it daemonized. Services start one after the other in
file order, each waited ready before the next, and stop in reverse order.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_runset.gateway.containment import HelperGroup, resolve, run_group_name
from pytest_runset.gateway.proctree import COOKIE_VAR
from pytest_runset.gateway.readiness import (
    exit_description,
    log_tail,
    start_process,
    stop_process,
    wait_ready,
)
from pytest_runset.model.placeholders import PlaceholderError, substitute
from pytest_runset.model.schema import ServiceSpec

TAIL_LINES = 20


@dataclass
class RunningService:
    name: str
    proc: subprocess.Popen[bytes]
    ports: list[int]
    log_path: Path
    cookie: str
    grace_s: float


class ServiceError(Exception):
    """A service that could not start, did not become ready, or died.

    ``str()``: the first line is the one-line summary (``service 'app' <problem>; last lines of
    services/app.log:``), the log's tail follows on the next lines.
    """

    def __init__(
        self,
        name: str,
        problem: str,
        *,
        log_name: str,
        tail: str,
        cancelled: bool = False,
    ) -> None:
        self.name = name
        self.problem = " ".join(problem.split())
        self.log_name = log_name
        self.tail = tail
        # Interrupted while starting (Ctrl-C, global timeout): not the service's fault.
        self.cancelled = cancelled
        if tail.strip():
            self.summary = f"service {name!r} {self.problem}; last lines of {log_name}:"
            text = f"{self.summary}\n{tail}"
        else:
            self.summary = f"service {name!r} {self.problem}; {log_name} is empty"
            text = self.summary
        super().__init__(text)


def service_cookie(run_id: str, name: str) -> str:
    return f"{run_id}.service.{name}"


class Services:
    """The run's services: leases their ports, starts, watches and stops them."""

    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        *,
        run_dir: Path,
        run_id: str,
        base_dir: Path,
        base_env: Mapping[str, str],
        default_grace_s: float,
        lease_ports: Callable[[int], list[int]],
        containment: str = "process-group",
        group_run_id: str | None = None,
        note_cookie: Callable[[str], None] = lambda cookie: None,
    ) -> None:
        self._specs = list(specs)
        # The cgroup tier gives each service a group of its own under the run's group.
        self._tree = resolve(containment)[1]
        self._groups: dict[str, HelperGroup] = {}
        self._run_group = run_group_name(group_run_id or run_id)
        # Lists each service's cookie for the run's watchdog (a controller that dies).
        self._note_cookie = note_cookie
        self._run_dir = Path(run_dir)
        self._run_id = run_id
        self._base_dir = Path(base_dir)
        self._base_env = dict(base_env)
        self._default_grace_s = default_grace_s
        self._lease_ports = lease_ports
        self._ports: dict[str, list[int]] = {}
        self._running: list[RunningService] = []
        self._started = False
        # Processes the cookie sweep had to kill when a service stopped, by service name.
        self.leftovers: dict[str, int] = {}

    # -- ports and placeholders -------------------------------------------------------------

    def ports(self) -> dict[str, list[int]]:
        """Service name -> its leased ports (empty until :meth:`start` leased them)."""
        return {name: list(ports) for name, ports in self._ports.items()}

    def placeholder_values(self) -> dict[str, str]:
        """``services.<name>.port`` and ``services.<name>.ports[i]`` for every service."""
        values: dict[str, str] = {}
        for name, ports in self._ports.items():
            if ports:
                values[f"services.{name}.port"] = str(ports[0])
            for index, port in enumerate(ports):
                values[f"services.{name}.ports[{index}]"] = str(port)
        return values

    def log_path(self, name: str) -> Path:
        return self._run_dir / "services" / f"{name}.log"

    def _log_name(self, name: str) -> str:
        return f"services/{name}.log"

    def _error(self, name: str, problem: str, *, cancelled: bool = False) -> ServiceError:
        return ServiceError(
            name,
            problem,
            log_name=self._log_name(name),
            tail=log_tail(str(self.log_path(name)), TAIL_LINES),
            cancelled=cancelled,
        )

    # -- start ------------------------------------------------------------------------------

    def start(self, cancelled: Callable[[], bool] | None = None) -> None:
        """Start every service in file order, each ready before the next one starts.

        On any problem the services already started are stopped and :class:`ServiceError`
        is raised (also on an unexpected exception or KeyboardInterrupt, which propagate after
        the stop).
        """
        if self._started:
            raise RuntimeError("services were started already")
        self._started = True
        try:
            # All ports first: a service may name another's port ({services.db.port}), and a
            # lease failure should not leave half the services running.
            for spec in self._specs:
                if spec.ports > 0:
                    try:
                        self._ports[spec.name] = list(self._lease_ports(spec.ports))
                    except Exception as exc:
                        raise self._error(
                            spec.name, f"cannot lease {spec.ports} port(s): {exc}"
                        ) from exc
                else:
                    self._ports[spec.name] = []
            for spec in self._specs:
                if cancelled is not None and cancelled():
                    raise self._error(spec.name, "was cancelled before it started", cancelled=True)
                self._start_one(spec, cancelled)
        except BaseException:
            self.stop()
            raise

    def _start_one(self, spec: ServiceSpec, cancelled: Callable[[], bool] | None) -> None:
        name = spec.name
        ports = self._ports[name]
        cookie = service_cookie(self._run_id, name)
        log_path = self.log_path(name)
        values: dict[str, str] = {
            "run_dir": str(self._run_dir),
            "run_id": self._run_id,
            "name": name,
            "python": sys.executable,
            "slot": "0",
            "flow_dir": str(self._run_dir),
            "slug": name,
            "base_url": "",
            "attempt": "1",
            **self.placeholder_values(),
        }
        if ports:
            values["port"] = str(ports[0])
        for index, port in enumerate(ports):
            values[f"ports[{index}]"] = str(port)

        runset_env = {
            "RUNSET_RUN_ID": self._run_id,
            "RUNSET_RUN_DIR": str(self._run_dir),
            "RUNSET_SERVICE": name,
            COOKIE_VAR: cookie,
        }
        if ports:
            runset_env["RUNSET_PORT"] = str(ports[0])
            runset_env["RUNSET_PORTS"] = ",".join(str(port) for port in ports)
        try:
            # RUNSET_* are there before the service's own env so that {env.RUNSET_PORT} works,
            # and again after it so that a service cannot drop its cookie.
            env = {**self._base_env, **runset_env}
            for key, value in spec.env.items():
                env[key] = substitute(value, values, env)
            env.update(runset_env)
            command: list[str] | str
            if isinstance(spec.command, str):
                command = substitute(spec.command, values, env)
            else:
                command = [substitute(arg, values, env) for arg in spec.command]
            cwd = self._base_dir
            if spec.cwd is not None:
                cwd = self._base_dir / substitute(spec.cwd, values, env)
            ready = substitute(spec.ready, values, env) if spec.ready is not None else None
        except PlaceholderError as exc:
            raise self._error(name, f"cannot be configured: {exc}") from None

        group = HelperGroup.make(self._tree, self._run_group, "service", name)
        self._note_cookie(cookie)
        try:
            proc = start_process(
                command,
                shell=spec.shell,
                cwd=str(cwd),
                env=env,
                log_path=str(log_path),
                preexec=group.preexec() if group is not None else None,
            )
        except OSError as exc:
            if group is not None:
                group.close()
            raise self._error(name, str(exc)) from None
        if group is not None:
            group.started()
            self._groups[name] = group
        grace = spec.kill_grace if spec.kill_grace is not None else self._default_grace_s
        service = RunningService(
            name=name, proc=proc, ports=ports, log_path=log_path, cookie=cookie, grace_s=grace
        )
        # Registered before the wait, so that any failure from here on stops it with the rest.
        self._running.append(service)
        problem = wait_ready(
            proc,
            ready=ready,
            ready_log=spec.ready_log,
            log_path=str(log_path),
            timeout_s=spec.ready_timeout,
            cancelled=cancelled,
        )
        if problem is not None:
            is_cancelled = problem == "cancelled"
            # Stopped before the tail is read, so the tail holds its last words too.
            self.stop()
            raise self._error(
                name,
                "was cancelled before it was ready" if is_cancelled else problem,
                cancelled=is_cancelled,
            )

    # -- watch and stop ---------------------------------------------------------------------

    def running(self) -> list[RunningService]:
        return list(self._running)

    def check_alive(self) -> ServiceError | None:
        """The first service that exited since it started, as an error with its log tail."""
        for service in self._running:
            code = service.proc.poll()
            if code is not None:
                why = exit_description(code)
                if code < 0:
                    why = f"was {why}"
                return self._error(service.name, f"{why} after it was ready")
        return None

    def stop(self) -> None:
        """Stop every started service, last started first. Never raises; idempotent."""
        while self._running:
            service = self._running.pop()
            try:
                self.leftovers[service.name] = stop_process(
                    service.proc, grace_s=service.grace_s, cookie=service.cookie
                )
                group = self._groups.pop(service.name, None)
                if group is not None:
                    self.leftovers[service.name] += group.close()
            except Exception:
                # Best effort: one service that cannot be stopped must not keep the others up.
                continue


__all__ = [
    "RunningService",
    "ServiceError",
    "Services",
    "service_cookie",
]

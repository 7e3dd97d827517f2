"""Running flows on other hosts: which gateways to start and how a spec travels there.

The controller keeps deciding everything run-wide (scheduling, personas, limits, the report);
a remote gateway only runs the attempt it is given. Paths in the attempt's spec are mapped to
the host that runs it: the run directory to a scratch directory on that host (the flow's files
come back over the channel when it ends, see :mod:`pytest_runset.gateway.transfer`) and, with
``--runset-remote-root``, the run-set's directory to that root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_runset.gateway.protocol import AttemptSpec
from pytest_runset.gateway.transfer import DEFAULT_MAX_ARTIFACT_MB
from pytest_runset.model.flows import RunSet
from pytest_runset.model.txspec import (
    GatewaySpec,
    ProxySpec,
    TxSpecError,
    non_loopback_sockets,
    parse_proxies,
    parse_tx,
)


@dataclass(frozen=True)
class Scaleout:
    """The gateways of a run that names ``--runset-tx`` (or ``[runset] tx``)."""

    gateways: list[GatewaySpec]
    proxies: dict[str, ProxySpec]
    remote_root: str | None
    max_bytes: int


def _proxies(config: pytest.Config) -> dict[str, ProxySpec]:
    try:
        return parse_proxies(list(config.option.runset_px or []))
    except TxSpecError as exc:
        raise pytest.UsageError(str(exc)) from None


def check_options(config: pytest.Config) -> None:
    """Early, before collection: bad specs cost one line (exit 4)."""
    proxies = _proxies(config)
    try:
        parse_tx(list(config.option.runset_tx or []), proxies, source="--runset-tx")
    except TxSpecError as exc:
        raise pytest.UsageError(str(exc)) from None
    root = config.option.runset_remote_root
    if root is not None and not os.path.isabs(root):
        raise pytest.UsageError(f"--runset-remote-root {root!r}: must be an absolute path")
    endpoint = config.option.runset_browser_endpoint
    if endpoint is not None:
        from pytest_runset.gateway.endpoint import check_endpoint

        try:
            check_endpoint(endpoint)
        except ValueError as exc:
            raise pytest.UsageError(f"--runset-browser-endpoint {exc}") from None


def resolve(config: pytest.Config, runsets: list[RunSet]) -> Scaleout | None:
    """The run's gateways: the command line's ``--runset-tx``, else a run-set's ``tx``."""
    proxies = _proxies(config)
    source = "--runset-tx"
    values = list(config.option.runset_tx or [])
    if not values:
        for runset in runsets:
            if runset.settings.tx:
                values, source = list(runset.settings.tx), f"{runset.path}: [runset] tx"
                break
    if not values:
        return None
    try:
        gateways = parse_tx(values, proxies, source=source)
    except TxSpecError as exc:
        raise pytest.UsageError(str(exc)) from None
    if source != "--runset-tx":
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        for spec in non_loopback_sockets(gateways):
            if reporter is not None:
                reporter.write_line(f"WARNING: {socket_warning(spec)}", yellow=True)
    caps = [runset.settings.max_artifact_mb for runset in runsets]
    megabytes = max(caps) if caps else DEFAULT_MAX_ARTIFACT_MB
    return Scaleout(
        gateways=gateways,
        proxies=proxies,
        remote_root=config.option.runset_remote_root,
        max_bytes=int(megabytes * 1024 * 1024),
    )


def warn_open_sockets(config: pytest.Config) -> None:
    """execnet socket servers run any code sent to them, unauthenticated: say so when a spec
    reaches one beyond loopback (ssh is the way across machines)."""
    try:
        gateways = parse_tx(list(config.option.runset_tx or []), None, source="--runset-tx")
    except TxSpecError:
        return
    for spec in non_loopback_sockets(gateways):
        config.issue_config_time_warning(pytest.PytestWarning(socket_warning(spec)), stacklevel=2)


def socket_warning(spec: str) -> str:
    return (
        f"--runset-tx {spec}: an execnet socket server off this machine runs any code sent to "
        "it without authentication; use ssh= across machines (docs/scaling-out.md)"
    )


def check_workers(config: pytest.Config, scaleout: Scaleout, own_n: bool) -> None:
    """``-n``/``--runset-workers`` next to tx: the same count is fine, another one is not."""
    count = len(scaleout.gateways)
    for option, raw in (
        ("--runset-workers", config.option.runset_workers),
        ("-n", getattr(config.option, "numprocesses", None) if own_n else None),
    ):
        if raw is None or str(raw) == "auto":
            continue
        if str(raw).isdigit() and int(raw) != count:
            raise pytest.UsageError(
                f"{option} {raw} conflicts with --runset-tx/[runset] tx, which start {count} "
                "gateway(s); leave one of them out"
            )


def remote_spec(
    spec: AttemptSpec,
    *,
    host: str,
    scratch: str,
    run_dir: Path,
    runset_dir: Path,
    remote_root: str | None,
    max_bytes: int,
) -> AttemptSpec:
    """``spec`` as the remote host must see it, plus what brings its files back."""
    from pytest_runset.gateway.transfer import map_paths

    remote_run_dir = os.path.join(scratch, run_dir.name)
    pairs = [(str(run_dir), remote_run_dir)]
    if remote_root is not None:
        pairs.append((str(runset_dir), remote_root.rstrip("/") or "/"))
    mapped: AttemptSpec = map_paths(spec, pairs)
    mapped["transfer"] = {
        "host": host,
        "max_bytes": max_bytes,
        "map_back": [[new, old] for old, new in pairs],
    }
    return mapped


__all__ = ["Scaleout", "check_options", "check_workers", "remote_spec", "resolve"]

"""What a flow must lease before it may start: its persona, its tag-limit slots, its ports.

The scheduler asks :func:`acquire` for each candidate flow; a flow gets everything it needs at
once or nothing (no flow holds a persona while it waits for a port).
"""

from __future__ import annotations

from pytest_runset.model.flows import POOL_PREFIX, Flow, RunSet
from pytest_runset.resources.leases import Lease, Leaser


def needs_leases(flow: Flow, runset: RunSet) -> bool:
    limits = runset.settings.limits
    sidecar_ports = flow.sidecar.ports if flow.sidecar is not None else 0
    return (
        flow.persona is not None
        or flow.ports + sidecar_ports > 0
        or any(tag in limits for tag in flow.tags)
    )


def acquire(leaser: Leaser, runset: RunSet, flow: Flow) -> tuple[Lease | None, str | None]:
    """``(lease, None)`` when the flow can start now, else ``(None, what it waits for)``."""
    lease = Lease()
    if flow.persona is not None:
        candidates = runset.persona_candidates(flow.persona)
        if not leaser.take_persona(candidates, lease):
            lease.release()
            if flow.persona.startswith(POOL_PREFIX):
                pool = flow.persona[len(POOL_PREFIX) :]
                return None, f"every persona of pool {pool!r} busy"
            return None, f"persona {flow.persona!r} busy"
    for tag in flow.tags:
        limit = runset.settings.limits.get(tag)
        if limit is not None and not leaser.take_limit(tag, limit, lease):
            lease.release()
            return None, f"limit of {limit} running flows tagged {tag!r} reached"
    sidecar_ports = flow.sidecar.ports if flow.sidecar is not None else 0
    count = flow.ports + sidecar_ports
    port_range = runset.settings.ports.range
    if count and not leaser.take_ports(count, port_range, lease):
        lease.release()
        return None, f"no {count} free port(s) in {port_range[0]}-{port_range[1]}"
    return lease, None

"""``--runset-shard K/N``: which flows one of N machines runs. Pure, apart from the hook.

The assignment is a function of the selected flows (node ids, in file order), N and the
duration history only, so every shard of one CI run computes the same partition and the
shards are disjoint and complete:

- with history, the flows are taken longest first (ties by node id) and each goes to the
  shard with the least expected work so far (ties: the lowest shard), which keeps the
  slowest shard close to the average. A flow without history counts as the median of those
  with one.
- without any history, flows are dealt round-robin in file order.

A sharded run does not record durations into the history: the history is then the same for
every shard of a cycle, even when the shards run one after another in one directory.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import statistics
from collections.abc import Mapping, Sequence

import pytest

from pytest_runset.results.formats import ShardInfo

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


# What a sharded session ran: {"index", "total", "balanced_by", "plan"}; report.json carries it.
SHARD_INFO = pytest.StashKey[ShardInfo]()


def plan_digest(assigned: Mapping[str, int]) -> str:
    """A fingerprint of a whole partition: shards of one plan agree on it, others do not."""
    text = json.dumps(sorted(assigned.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ShardError(ValueError):
    """A malformed ``--runset-shard`` value (one-line message)."""


def parse_shard(raw: str) -> tuple[int, int]:
    """``"2/5"`` -> ``(2, 5)``: K in 1..N, N >= 1."""
    match = _SHARD.match(raw)
    if match is None:
        raise ShardError(f"--runset-shard {raw!r}: expected K/N, e.g. 1/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ShardError(f"--runset-shard {raw!r}: N must be at least 1")
    if not 1 <= index <= count:
        raise ShardError(f"--runset-shard {raw!r}: K must be between 1 and {count}")
    return index, count


def assign_shards(
    keys: Sequence[str], count: int, durations: Mapping[str, float] | None = None
) -> dict[str, int]:
    """The shard (1-based) of each key."""
    if count < 1:
        raise ValueError("at least one shard")
    known = {key: durations[key] for key in keys if durations and key in durations}
    if not known:
        return {key: index % count + 1 for index, key in enumerate(keys)}
    default = statistics.median(known.values())
    order = sorted(keys, key=lambda key: (-known.get(key, default), key))
    loads = [(0.0, shard) for shard in range(1, count + 1)]
    assigned: dict[str, int] = {}
    for key in order:
        load, shard = heapq.heappop(loads)
        assigned[key] = shard
        heapq.heappush(loads, (load + known.get(key, default), shard))
    return assigned


def shard_loads(
    assigned: Mapping[str, int], count: int, durations: Mapping[str, float]
) -> list[float]:
    """Expected work per shard (for reports and benchmarks)."""
    loads = [0.0] * count
    for key, shard in assigned.items():
        loads[shard - 1] += durations.get(key, 0.0)
    return loads


def contiguous_shards(keys: Sequence[str], count: int) -> dict[str, int]:
    """Equal-count contiguous blocks in file order (how Playwright shards), for comparison."""
    size, extra = divmod(len(keys), count)
    assigned: dict[str, int] = {}
    start = 0
    for shard in range(1, count + 1):
        end = start + size + (1 if shard <= extra else 0)
        for key in keys[start:end]:
            assigned[key] = shard
        start = end
    return assigned


def select_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the flows of other shards (ordinary tests are left alone)."""
    raw = config.getoption("runset_shard", None)
    if raw is None:
        return
    from pytest_runset.session.collect import RunsetItem
    from pytest_runset.session.history import durations

    index, count = parse_shard(raw)
    keys = [item.nodeid for item in items if isinstance(item, RunsetItem)]
    history = durations(config, keys)
    assigned = assign_shards(keys, count, history)
    # Shards computed from different histories split differently: merge compares the plans.
    info: ShardInfo = {
        "index": index,
        "total": count,
        "balanced_by": "history" if history else "file order",
        "plan": plan_digest(assigned),
    }
    config.stash[SHARD_INFO] = info
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        if isinstance(item, RunsetItem) and assigned[item.nodeid] != index:
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept

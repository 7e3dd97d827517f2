"""--runset-shard K/N: the pure assignment, and shards end to end through pytest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import load_report
from pytest_runset.session.history import CACHE_KEY
from pytest_runset.session.shards import (
    ShardError,
    assign_shards,
    contiguous_shards,
    parse_shard,
    shard_loads,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1/1", (1, 1)), ("2/5", (2, 5)), (" 3 / 3 ", (3, 3)), ("10/12", (10, 12))],
)
def test_parse_shard_accepts_k_of_n(raw: str, expected: tuple[int, int]) -> None:
    assert parse_shard(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("0/3", "K must be between 1 and 3"),
        ("4/3", "K must be between 1 and 3"),
        ("1/0", "N must be at least 1"),
        ("x", "expected K/N"),
        ("1/", "expected K/N"),
        ("-1/2", "expected K/N"),
        ("1.5/2", "expected K/N"),
    ],
)
def test_parse_shard_rejects_bad_values_in_one_line(raw: str, problem: str) -> None:
    with pytest.raises(ShardError) as excinfo:
        parse_shard(raw)
    assert problem in str(excinfo.value)
    assert "--runset-shard" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_without_history_flows_are_dealt_round_robin_in_file_order() -> None:
    keys = ["e", "d", "c", "b", "a"]
    assert assign_shards(keys, 2) == {"e": 1, "d": 2, "c": 1, "b": 2, "a": 1}
    assert assign_shards(keys, 2, {}) == assign_shards(keys, 2)


def test_with_history_longest_goes_first_into_the_least_loaded_shard() -> None:
    durations = {"a": 1.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 2.0}
    # b -> 1 (5), c -> 2 (4), d -> 2 (7), e -> 1 (7), a -> 1 (ties: lowest shard) (8)
    assigned = assign_shards(list(durations), 2, durations)
    assert assigned == {"b": 1, "c": 2, "d": 2, "e": 1, "a": 1}
    assert shard_loads(assigned, 2, durations) == [8.0, 7.0]


def test_equal_durations_are_ordered_by_name_not_by_file_position() -> None:
    durations = {"x": 1.0, "y": 1.0, "z": 1.0, "w": 1.0}
    first = assign_shards(["x", "y", "z", "w"], 3, durations)
    second = assign_shards(["w", "z", "y", "x"], 3, durations)
    assert first == second == {"w": 1, "x": 2, "y": 3, "z": 1}


def test_a_flow_without_history_counts_as_the_median_of_the_others() -> None:
    durations = {"a": 10.0, "b": 2.0, "c": 2.0}
    assigned = assign_shards(["a", "b", "c", "new"], 2, durations)
    # a (10) alone; b, c and new (counted as 2) together.
    assert assigned == {"a": 1, "b": 2, "c": 2, "new": 2}


def test_contiguous_split_is_equal_count_blocks_in_file_order() -> None:
    keys = [f"k{i}" for i in range(7)]
    assigned = contiguous_shards(keys, 3)
    assert [assigned[key] for key in keys] == [1, 1, 1, 2, 2, 3, 3]


@given(
    durations=st.dictionaries(
        st.text(alphabet="abcdefgh", min_size=1, max_size=4),
        st.floats(min_value=0.0, max_value=1000.0),
        max_size=40,
    ),
    count=st.integers(min_value=1, max_value=8),
    with_history=st.booleans(),
)
def test_every_flow_is_in_exactly_one_shard_and_greedy_stays_balanced(
    durations: dict[str, float], count: int, with_history: bool
) -> None:
    keys = list(durations)
    history = durations if with_history else None
    assigned = assign_shards(keys, count, history)
    assert set(assigned) == set(keys)
    assert all(1 <= shard <= count for shard in assigned.values())
    assert assign_shards(keys, count, history) == assigned
    if with_history and keys:
        loads = shard_loads(assigned, count, durations)
        # Greedy into the least-loaded shard: no shard exceeds another by more than one flow.
        assert max(loads) - min(loads) <= max(durations.values()) + 1e-6


FLOWS = 7
RUNSET = '[runset]\nname = "sharded"\n' + "".join(
    f'\n[[flows]]\nname = "flow {i}"\ncommand = ["sleep", "0.{i}"]\n'
    f'tags = ["{"odd" if i % 2 else "even"}"]\n'
    for i in range(FLOWS)
)


def write_history(pytester: pytest.Pytester, durations: dict[str, float]) -> None:
    path = pytester.path / ".pytest_cache" / "v" / Path(CACHE_KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    history = {f"run-set.toml::{slug}": [value] for slug, value in durations.items()}
    path.write_text(json.dumps(history), encoding="utf-8")


def shard_run(pytester: pytest.Pytester, shard: str, run_id: str, *args: str) -> list[str]:
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-workers", "2", "--runset-shard", shard,
        "--runset-run-id", run_id, *args,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    report = load_report(pytester.path / "runset-results" / run_id)
    return [flow["name"] for flow in report["flows"]]


def sweep(pytester: pytest.Pytester, label: str, count: int = 3) -> list[list[str]]:
    return [shard_run(pytester, f"{k}/{count}", f"{label}-{k}") for k in range(1, count + 1)]


def assert_partition(shards: list[list[str]], expected: set[str]) -> None:
    names = [name for shard in shards for name in shard]
    assert len(names) == len(set(names)), shards  # disjoint
    assert set(names) == expected  # complete


def test_shards_partition_the_flows_and_stay_the_same_across_runs(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    everything = {f"flow {i}" for i in range(FLOWS)}
    without_history = sweep(pytester, "a")
    assert_partition(without_history, everything)
    # Round-robin in file order.
    assert without_history[0] == ["flow 0", "flow 3", "flow 6"]
    # Sharded runs leave the history alone, so the next cycle is identical.
    assert not (pytester.path / ".pytest_cache" / "v" / Path(CACHE_KEY)).exists()
    assert sweep(pytester, "b") == without_history

    # With history (flow i took i seconds), shards are balanced by it.
    write_history(pytester, {f"flow-{i}": float(i) for i in range(FLOWS)})
    with_history = sweep(pytester, "c")
    assert_partition(with_history, everything)
    # 6 -> 1, 5 -> 2, 4 -> 3, 3 -> 3, 2 -> 2, 1 -> 1, 0 -> 1 (all at 7 s: the lowest shard).
    assert with_history == [
        ["flow 0", "flow 1", "flow 6"],
        ["flow 2", "flow 5"],
        ["flow 3", "flow 4"],
    ]
    assert sweep(pytester, "d") == with_history


def test_shards_split_what_k_and_m_selected(pytester: pytest.Pytester) -> None:
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    shards = [shard_run(pytester, f"{k}/2", f"odd-{k}", "-m", "odd") for k in (1, 2)]
    assert_partition(shards, {"flow 1", "flow 3", "flow 5"})
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-shard", "2/2", "-k", "not flow", "--co", "-q"
    )
    assert result.ret == 5  # nothing selected is nothing to shard


def test_deselected_flows_are_counted_as_deselected(pytester: pytest.Pytester) -> None:
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-shard", "1/2", "--co", "-q"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["4/7 tests collected (3 deselected)*"])


def test_ordinary_tests_are_not_sharded(pytester: pytest.Pytester) -> None:
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "run-set.toml", "test_plain.py", "--runset-shard", "3/3", "--co", "-q"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_plain.py::test_plain*", "3/8 tests collected*"])


@pytest.mark.parametrize("value", ["0/2", "3/2", "1/0", "two/3", ""])
def test_a_bad_shard_value_is_one_line_and_exit_4(pytester: pytest.Pytester, value: str) -> None:
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-shard", value)
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, result.stderr.str()
    assert errors[0].startswith("ERROR: --runset-shard")
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_history_file_of_an_unsharded_run_has_every_flow(pytester: pytest.Pytester) -> None:
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-workers", "2")
    assert result.ret == 0
    path = pytester.path / ".pytest_cache" / "v" / Path(CACHE_KEY)
    history = json.loads(path.read_text(encoding="utf-8"))
    assert len(history) == FLOWS

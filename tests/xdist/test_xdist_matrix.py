"""A matrix run under pytest-xdist: the same expanded flows, node ids and groups as in
pytest-runset's own pool (matrices are expanded when the run-set loads, before either runs), a
variant's tag limit held, and shards under xdist that merge into the same groups."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from conftest import load_report
from pytest_runset.cli import main as cli

# xdist.plugin, not xdist: see test_xdist.py.
pytest.importorskip("xdist.plugin", reason="needs pytest-xdist (tox -e xdist, .ci/run)")

RUNSET = """
[runset]
name = "matrix"
timeout = "60s"

[runset.limits]
v_b = 1

[[flows]]
name = "t {matrix.variant} {matrix.seed}"
command = ["{python}", "trial.py", "{matrix.seed}"]
tags = ["v_{matrix.variant}"]
matrix = { variant = ["a", "b"], seed = [1, 2, 3] }
"""
# Scores from the seed; variant b with seed 3 fails.
TRIAL = """
import json, os, sys, time
seed = int(sys.argv[1])
time.sleep(0.2)
with open(os.environ["RUNSET_REPORT"], "w") as out:
    json.dump({"metrics": {"score": seed * 2}}, out)
sys.exit(os.environ["RUNSET_MATRIX_VARIANT"] == "b" and seed == 3)
"""


def test_a_matrix_under_xdist_gives_the_groups_of_the_own_pool(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(tmp_path / "locks"))
    (pytester.path / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    (pytester.path / "trial.py").write_text(TRIAL, encoding="utf-8")
    reports = {}
    for run_id, workers in (("pool", ["--runset-workers", "2"]), ("xdist", ["-n", "2"])):
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--runset", "run-set.toml", *workers,
            "--runset-run-id", run_id, timeout=240,
        )  # fmt: skip
        assert result.ret == 1, result.stdout.str()
        result.stdout.fnmatch_lines(["*FAILED run-set.toml::t-b-3*"])
        reports[run_id] = load_report(pytester.path / "runset-results" / run_id)
    pool, xdist = reports["pool"], reports["xdist"]
    assert [f["nodeid"] for f in xdist["flows"]] == [f["nodeid"] for f in pool["flows"]]
    assert [f["matrix"] for f in xdist["flows"]] == [
        {"variant": v, "seed": s} for v in "ab" for s in (1, 2, 3)
    ]
    assert xdist["groups"] == pool["groups"]
    assert [g["by"] for g in xdist["groups"]] == ["variant", "seed", "tag"]
    # The tag limit of variant b holds under xdist's workers too (the report's offsets, rounded
    # to the microsecond).
    spans = sorted(
        (f["started_s"], f["started_s"] + f["duration_s"])
        for f in xdist["flows"]
        if f["matrix"]["variant"] == "b"
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 1e-5, f"two v_b flows overlapped: {spans}"
    # Shards under xdist, merged: the groups of the whole run.
    shards = []
    for shard in (1, 2):
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--runset", "run-set.toml", "-n", "2",
            "--runset-shard", f"{shard}/2", "--runset-run-id", f"s{shard}", timeout=240,
        )  # fmt: skip
        assert result.ret in (0, 1), result.stdout.str()
        shards.append(str(pytester.path / "runset-results" / f"s{shard}" / "report.json"))
    merged = pytester.path / "merged" / "report.json"
    assert cli(["merge", *shards, "-o", str(merged)]) == 0
    assert json.loads(merged.read_text())["groups"] == pool["groups"]

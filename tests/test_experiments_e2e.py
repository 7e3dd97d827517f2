"""Experiments end to end: a matrix run's tag limits hold, and its groups are the same whether
the run went through in one go, was interrupted and resumed, or ran as shards then merged.
See DESIGN.md, "Experiments: matrices and grouped metrics"."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import load_report, wait_for
from pytest_runset.cli import main as cli

# A trial: sleeps a little, records when it ran and what it saw, reports a score that depends
# only on its matrix values, and fails for variant b with seed 4.
TRIAL = """\
import json, os, sys, time
start = time.time()
time.sleep({sleep})
variant, seed = os.environ["RUNSET_MATRIX_VARIANT"], int(os.environ["RUNSET_MATRIX_SEED"])
out = os.path.join(os.environ["RUNSET_FLOW_DIR"], "span.json")
with open(out, "w") as handle:
    span = {{"start": start, "end": time.time(), "variant": variant, "argv": sys.argv[1:]}}
    json.dump(span, handle)
score = seed * 1.5 + (2.0 if variant == "b" else 0.0)
with open(os.environ["RUNSET_REPORT"], "w") as handle:
    json.dump({{"metrics": {{"score": score, "model": "m-" + variant}}}}, handle)
sys.exit(1 if (variant, seed) == ("b", 4) else 0)
"""


def runset_text(limit: str = "") -> str:
    return f"""
[runset]
name = "experiment"
timeout = "60s"
kill_grace = "1s"
{limit}

[[flows]]
name = "trial {{matrix.variant}} seed {{matrix.seed}}"
command = ["{{python}}", "trial.py", "{{matrix.variant}}"]
tags = ["variant_{{matrix.variant}}"]
matrix = {{ variant = ["a", "b"], seed = {{ range = [1, 5] }} }}
"""


@pytest.fixture
def experiment(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """Write the run-set and its trial script; leases go to a private lock directory."""
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(tmp_path / "locks"))

    def write(sleep: float = 0.05, limit: str = "") -> Path:
        (pytester.path / "trial.py").write_text(TRIAL.format(sleep=sleep), encoding="utf-8")
        path = pytester.path / "run-set.toml"
        path.write_text(runset_text(limit), encoding="utf-8")
        return pytester.path / "runset-results"

    return write


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--runset", "run-set.toml", *args, timeout=120
    )


def spans(run_dir: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads((run_dir / f["dir"] / "span.json").read_text()) for f in report["flows"]]


def test_a_variant_tag_limit_is_never_exceeded(
    pytester: pytest.Pytester, experiment: Callable[..., Path]
) -> None:
    results = experiment(sleep=0.3, limit="limits = { variant_b = 1 }")
    result = run(pytester, "--runset-workers", "4", "--runset-run-id", "lim")
    assert result.ret == 1, result.stdout.str()  # (b, 4) fails
    report = load_report(results / "lim")
    names = [f"trial {v} seed {s}" for v in "ab" for s in range(1, 5)]
    assert [f["name"] for f in report["flows"]] == names
    assert [f["nodeid"] for f in report["flows"]] == [
        f"run-set.toml::trial-{v}-seed-{s}" for v in "ab" for s in range(1, 5)
    ]
    assert [f["matrix"] for f in report["flows"]] == [
        {"variant": v, "seed": s} for v in "ab" for s in range(1, 5)
    ]
    seen = spans(results / "lim", report)
    assert [s["argv"] for s in seen] == [[v] for v in "aaaabbbb"]
    b_spans = sorted((s["start"], s["end"]) for s in seen if s["variant"] == "b")
    for (_, end), (start, _) in itertools.pairwise(b_spans):
        assert start >= end, f"two variant_b flows overlapped: {b_spans}"
    result.stdout.fnmatch_lines(["*FAILED run-set.toml::trial-b-seed-4*"])


def test_interrupt_and_resume_give_the_groups_of_one_clean_run(
    pytester: pytest.Pytester,
    experiment: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    results = experiment(sleep=0.25)
    clean = run(pytester, "--runset-workers", "2", "--runset-run-id", "clean")
    assert clean.ret == 1, clean.stdout.str()
    expected = load_report(results / "clean")["groups"]
    assert [g["by"] for g in expected] == ["variant", "seed", "tag"]

    broken = spawn_pytest(
        "--runset", "run-set.toml", "--runset-workers", "1", "--runset-run-id", "broken"
    )
    journal = results / "broken" / "journal.jsonl"

    def finished() -> int:
        if not journal.is_file():
            return 0
        lines = journal.read_text().splitlines()
        return sum(1 for line in lines if line.strip() and json.loads(line)["event"] == "flow")

    assert wait_for(lambda: finished() >= 3, timeout=60)
    broken.send_signal(signal.SIGINT)
    broken.communicate(timeout=60)
    assert broken.returncode == 2
    interrupted = load_report(results / "broken")
    statuses = [f["status"] for f in interrupted["flows"]]
    assert "not_run" in statuses or "interrupted" in statuses
    assert interrupted["groups"] != expected

    resumed = run(pytester, "--runset-workers", "2", "--runset-resume", "broken")
    assert resumed.ret == 1, resumed.stdout.str()
    report = load_report(results / "broken")
    assert [f["status"] for f in report["flows"]] == ["passed"] * 7 + ["failed"]
    assert report["groups"] == expected


def test_shards_merged_give_the_groups_of_one_clean_run(
    pytester: pytest.Pytester, experiment: Callable[..., Path], tmp_path: Path
) -> None:
    results = experiment()
    clean = run(pytester, "--runset-workers", "2", "--runset-run-id", "clean")
    assert clean.ret == 1, clean.stdout.str()
    expected = load_report(results / "clean")["groups"]
    for shard in (1, 2):
        result = run(pytester, "--runset-shard", f"{shard}/2", "--runset-run-id", f"s{shard}")
        assert result.ret in (0, 1), result.stdout.str()
        assert load_report(results / f"s{shard}")["groups"] != expected
    merged = tmp_path / "merged" / "report.json"
    shards = [str(results / f"s{shard}" / "report.json") for shard in (1, 2)]
    assert cli(["merge", *shards, "-o", str(merged)]) == 0
    report = json.loads(merged.read_text())
    assert len(report["flows"]) == 8
    assert report["groups"] == expected
    # And the comparison of the two says so: nothing changed.
    compare = subprocess.run(
        [sys.executable, "-m", "pytest_runset.cli", "compare", str(results / "clean"), str(merged)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compare.returncode == 0, compare.stderr
    assert "no pass rate fell significantly" in compare.stdout

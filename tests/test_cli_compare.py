"""``pytest-runset compare`` and ``pytest-runset show --group-by`` on reports written as JSON
files (the statistics themselves are tested in tests/results/test_groups.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.cli import main


def write_run(
    directory: Path, run_id: str, pass_rates: dict[str, float], *, n: int = 30, seed: int = 0
) -> Path:
    """``<directory>/<run_id>/report.json``: variant V passes round(rate * n) of its n flows."""
    rng = random.Random(seed)
    flows: list[dict[str, Any]] = []
    for variant, rate in pass_rates.items():
        for i in range(n):
            flows.append(
                {
                    "name": f"trial {variant} {i}",
                    "slug": f"trial-{variant}-{i}",
                    "index": len(flows),
                    "status": "passed" if i < round(rate * n) else "failed",
                    "tags": [f"variant_{variant}"],
                    "matrix": {"variant": variant, "seed": i},
                    "metrics": {"score": rng.gauss(5, 1), "model": "m1"},
                }
            )
    report = {
        "schema": "pytest-runset/report@1",
        "run_id": run_id,
        "runset": {"name": "eval", "file": "/x/run-set.toml", "sha256": "0" * 64},
        "status": "failed",
        "started_at": "2026-01-01T00:00:00.000Z",
        "finished_at": "2026-01-01T00:01:00.000Z",
        "wall_s": 60.0,
        "workers": 4,
        "flows": flows,
        "summary": {"total": len(flows)},
    }
    path = directory / run_id / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def test_compare_reports_a_significant_drop_and_fails_on_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write_run(tmp_path, "main", {"a": 0.9, "b": 0.9})
    new = write_run(tmp_path, "change", {"a": 0.9, "b": 0.4}, seed=1)
    assert main(["compare", str(base), str(new)]) == 0
    out = capsys.readouterr().out
    rows: dict[str, str] = {}
    for line in out.splitlines():  # the pass-rate table comes first, then the metrics'
        if line.startswith("variant="):
            rows.setdefault(line.split()[0], line)
    assert "27/30 90.0%" in rows["variant=b"]
    assert "12/30 40.0%" in rows["variant=b"]
    assert "-50.0 pp" in rows["variant=b"]
    assert rows["variant=b"].endswith("significant drop")
    assert not rows["variant=a"].endswith("significant drop")
    assert "pass rate fell significantly: every flow, variant=b, tag variant_b" in out
    assert "score" in out
    assert main(["compare", str(base), str(new), "--fail-on-regression"]) == 1
    capsys.readouterr()
    # Run ids are found in --output, as for show.
    code = main(["compare", "main", "change", "--output", str(tmp_path), "--group-by", "variant"])
    assert code == 0
    out = capsys.readouterr().out
    assert "every flow" not in out
    assert "tag " not in out
    assert "seed=" not in out


def test_compare_finds_no_regression_between_runs_of_one_distribution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write_run(tmp_path, "one", {"a": 0.9, "b": 0.6}, seed=2)
    new = write_run(tmp_path, "two", {"a": 0.9, "b": 0.6}, seed=3)
    assert main(["compare", str(base), str(new), "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    assert "significant drop" not in out
    assert "no pass rate fell significantly" in out


def test_compare_and_show_refuse_an_unknown_grouping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_run(tmp_path, "one", {"a": 1.0}, n=2)
    assert main(["compare", str(path), str(path), "--group-by", "sead"]) == 4
    err = capsys.readouterr().err
    assert err.strip() == (
        "--group-by sead: neither report has such a matrix axis or tags "
        "(they have: variant, seed, tag)"
    )
    assert main(["show", str(path), "--group-by", "sead"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--group-by sead: the report has no such matrix axis or tags" in captured.err


def test_show_group_by_prints_the_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_run(tmp_path, "one", {"a": 1.0, "b": 0.5}, n=4)
    assert main(["show", str(path), "--group-by", "variant"]) == 1  # the run failed
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index("grouped by matrix axis variant:")
    assert lines[start + 1].split() == ["VARIANT", "N", "PASS", "RATE", "PASSED", "FAILED"]
    assert lines[start + 2].split() == ["a", "4", "100.0%", "4", "0"]
    assert lines[start + 3].split() == ["b", "4", "50.0%", "2", "2"]
    assert "metric score:" in out
    assert "model" not in out  # a label, not a number
    assert "trial a 0" not in out  # the groups instead of the flows
    assert main(["show", str(path), "--group-by", "tag"]) == 1
    assert "grouped by tag:" in capsys.readouterr().out

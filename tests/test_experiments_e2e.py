"""Experiments end to end: the documented matrix run for real (its flows, environment, tags,
tag limit, and -k, -m and --lf on expanded node ids), matrix errors as one line and exit 4,
every attempt's metrics in the journal, and groups that are the same whether the run went
through in one go, was interrupted and resumed, ran as shards then merged, or was shared by
two sessions through a coordinator's queue.
See DESIGN.md, "Experiments: matrices and grouped metrics"."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis_support import RedisServer, redis_server

from conftest import load_report, wait_for
from pytest_runset.cli import main as cli

__all__ = ["redis_server"]

# A trial: sleeps a little, records when it ran and what it saw, reports a score that depends
# only on its matrix values, and fails for variant b with seed 4 (and, with FAIL_FIRST set, on
# its first attempt, reporting a score of -1 for it).
TRIAL = """\
import json, os, sys, time
start = time.time()
time.sleep({sleep})
variant, seed = os.environ["RUNSET_MATRIX_VARIANT"], int(os.environ["RUNSET_MATRIX_SEED"])
attempt = int(os.environ["RUNSET_ATTEMPT"])
out = os.path.join(os.environ["RUNSET_FLOW_DIR"], "span.json")
with open(out, "w") as handle:
    span = {{"start": start, "end": time.time(), "variant": variant, "argv": sys.argv[1:],
             "env": {{k: v for k, v in os.environ.items() if k.startswith("RUNSET_MATRIX_")
                     or k == "OUT"}}}}
    json.dump(span, handle)
first_fails = "FAIL_FIRST" in os.environ and attempt == 1
score = -1.0 if first_fails else seed * 1.5 + (2.0 if variant == "b" else 0.0)
with open(os.environ["RUNSET_REPORT"], "w") as handle:
    json.dump({{"metrics": {{"score": score, "model": "m-" + variant}}}}, handle)
sys.exit(1 if (variant, seed) == ("b", 4) or first_fails else 0)
"""


def runset_text(runset: str = "", matrix: str = "") -> str:
    return f"""
[runset]
name = "experiment"
timeout = "60s"
kill_grace = "1s"
{runset}

[[flows]]
name = "trial {{matrix.variant}} seed {{matrix.seed}}"
command = ["{{python}}", "trial.py", "{{matrix.variant}}"]
tags = ["variant_{{matrix.variant}}"]
matrix = {matrix or '{ variant = ["a", "b"], seed = { range = [1, 5] } }'}
"""


# The example of docs/runset-file.md, "Matrices": 3 variants x 4 seeds, less one, plus one.
THREE_BY_FOUR = """
[runset]
name = "experiment"
timeout = "60s"

[runset.limits]
variant_b = 1

[[flows]]
name = "trial {matrix.variant} seed {matrix.seed}"
command = ["{python}", "trial.py", "--variant", "{matrix.variant}", "--seed", "{matrix.seed}"]
tags = ["trial", "variant_{matrix.variant}"]
env = { OUT = "{flow_dir}/{matrix.variant}.json" }

[flows.matrix]
variant = ["a", "b", "c"]
seed = { range = [1, 5] }
exclude = [{ variant = "c", seed = 4 }]
include = [{ variant = "d", seed = 1 }]
"""
DOCUMENTED = [(v, s) for v in "abc" for s in (1, 2, 3, 4) if (v, s) != ("c", 4)] + [("d", 1)]


@pytest.fixture
def experiment(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """Write the run-set and its trial script; leases go to a private lock directory."""
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(tmp_path / "locks"))

    def write(sleep: float = 0.05, text: str | None = None, **parts: str) -> Path:
        (pytester.path / "trial.py").write_text(TRIAL.format(sleep=sleep), encoding="utf-8")
        path = pytester.path / "run-set.toml"
        path.write_text(runset_text(**parts) if text is None else text, encoding="utf-8")
        return pytester.path / "runset-results"

    return write


def run(pytester: pytest.Pytester, *args: str, cache: bool = False) -> pytest.RunResult:
    plugins = () if cache else ("-p", "no:cacheprovider")
    return pytester.runpytest_subprocess(*plugins, "--runset", "run-set.toml", *args, timeout=120)


def spans(run_dir: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads((run_dir / f["dir"] / "span.json").read_text()) for f in report["flows"]]


def assert_one_at_a_time(intervals: list[tuple[float, float]], slack: float = 0.0) -> None:
    ordered = sorted(intervals)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert start >= end - slack, f"two variant_b flows overlapped: {ordered}"


def test_the_documented_three_by_four_matrix_runs_and_its_tag_limit_holds(
    pytester: pytest.Pytester, experiment: Callable[..., Path]
) -> None:
    """docs/runset-file.md's matrix, run for real: its flows, names, node ids, commands,
    environment and tags; ``variant_b = 1`` never lets two b trials run at once, by the
    trials' own clocks and by the report's start and end offsets."""
    results = experiment(sleep=0.3, text=THREE_BY_FOUR)
    result = run(pytester, "--runset-workers", "4", "--runset-run-id", "lim", cache=True)
    assert result.ret == 1, result.stdout.str()  # (b, 4) fails
    result.stdout.fnmatch_lines(["*FAILED run-set.toml::trial-b-seed-4*"])
    run_dir = results / "lim"
    report = load_report(run_dir)
    flows = report["flows"]
    assert [f["name"] for f in flows] == [f"trial {v} seed {s}" for v, s in DOCUMENTED]
    assert [f["nodeid"] for f in flows] == [
        f"run-set.toml::trial-{v}-seed-{s}" for v, s in DOCUMENTED
    ]
    assert [f["matrix"] for f in flows] == [{"variant": v, "seed": s} for v, s in DOCUMENTED]
    assert [f["tags"] for f in flows] == [["trial", f"variant_{v}"] for v, _ in DOCUMENTED]
    seen = spans(run_dir, report)
    assert [s["argv"] for s in seen] == [["--variant", v, "--seed", str(s)] for v, s in DOCUMENTED]
    assert [s["env"] for s in seen] == [
        {
            "OUT": str(run_dir / f["dir"] / f"{v}.json"),
            "RUNSET_MATRIX_VARIANT": v,
            "RUNSET_MATRIX_SEED": str(s),
        }
        for f, (v, s) in zip(flows, DOCUMENTED, strict=True)
    ]
    assert_one_at_a_time([(s["start"], s["end"]) for s in seen if s["variant"] == "b"])
    # The report's offsets (rounded to the microsecond, hence the slack of a few of them).
    assert_one_at_a_time(
        [
            (f["started_s"], f["started_s"] + f["duration_s"])
            for f in flows
            if f["matrix"]["variant"] == "b"
        ],
        slack=1e-5,
    )
    by_variant = {g["value"]: g for g in report["groups"][0]["groups"]}
    assert (report["groups"][0]["by"], list(by_variant)) == ("variant", ["a", "b", "c", "d"])
    assert [by_variant[v]["n"] for v in "abcd"] == [4, 4, 3, 1]
    assert by_variant["b"]["pass_rate"] == 0.75
    # report.html shows them: a table per grouping, an inline-SVG plot of the score.
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    start = page.index('<section id="groups">')
    groups = page[start : page.index("</section>", start)]
    assert "<h3>by matrix axis variant</h3>" in groups
    assert "<h3>by tag</h3>" in groups
    assert 'aria-label="score per group"' in groups
    # Node ids from expanded names: -k, -m on a tag made of a value, and --lf select them.
    for args, selected in (
        (["-k", "trial-c"], [f"trial-c-seed-{s}" for s in (1, 2, 3)]),
        (["-m", "variant_d"], ["trial-d-seed-1"]),
        (["--lf"], ["trial-b-seed-4"]),
    ):
        listed = run(pytester, "--collect-only", "-q", *args, cache=True)
        assert listed.ret == 0, listed.stdout.str()
        nodeids = [line for line in listed.outlines if line.startswith("run-set.toml::")]
        assert nodeids == [f"run-set.toml::{slug}" for slug in selected], listed.stdout.str()


def test_matrix_errors_stop_the_run_with_one_line_and_exit_4(
    pytester: pytest.Pytester, experiment: Callable[..., Path]
) -> None:
    for matrix, line in (
        (
            '{ variant = ["a"], seed = [1], include = [{ variant = "b", sede = 2 }] }',
            "field 'matrix.include[0]': unknown axis 'sede' (axes: variant, seed)",
        ),
        (
            '{ variant = ["a"], seed = [1, 2], task = { range = [0, 50001] } }',
            "field 'matrix': 100,002 combinations; at most 100,000 per flow",
        ),
    ):
        experiment(matrix=matrix)
        result = run(pytester)
        output = result.stdout.lines + result.stderr.lines
        assert result.ret == pytest.ExitCode.USAGE_ERROR, "\n".join(output)
        assert "Traceback" not in "\n".join(output)
        assert (
            "ERROR: run-set.toml: flow #1 'trial {matrix.variant} seed {matrix.seed}', " + line
        ) in output
    experiment(text=runset_text().replace(" seed {matrix.seed}", ""))
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stdout.lines + result.stderr.lines if "'trial a'" in line]
    assert lines == [
        "ERROR: run-set.toml: flow #1 'trial {matrix.variant}', field 'name': 'trial a' is "
        'the name of both {variant = "a", seed = 1} and {variant = "a", seed = 2}; put every '
        "axis in the name (e.g. {matrix.<axis>}) so each flow has its own"
    ]


def test_the_journal_keeps_the_metrics_of_every_attempt(
    pytester: pytest.Pytester, experiment: Callable[..., Path]
) -> None:
    """Each trial fails its first attempt (score -1) and passes its retry: the report's and the
    journal's history hold both attempts' metrics; the groups use the last attempt's."""
    results = experiment(
        runset='env = { FAIL_FIRST = "1" }\nretries = 1',
        matrix='{ variant = ["a"], seed = [1, 2] }',
    )
    result = run(pytester, "--runset-workers", "2", "--runset-run-id", "retried")
    assert result.ret == 0, result.stdout.str()
    report = load_report(results / "retried")
    lines = (results / "retried" / "journal.jsonl").read_text().splitlines()
    journal = [json.loads(line) for line in lines if line.strip()]
    journal_flows = {e["name"]: e for e in journal if e["event"] == "flow"}
    for flow in report["flows"]:
        seed = flow["matrix"]["seed"]
        scores = [attempt["metrics"]["score"] for attempt in flow["history"]]
        assert scores == [-1.0, seed * 1.5]
        kept = journal_flows[flow["name"]]["history"]
        assert [attempt["metrics"]["score"] for attempt in kept] == scores
        assert flow["flaky"] is True
    (variant,) = report["groups"][0]["groups"]
    assert variant["metrics"]["score"]["mean"] == (1.5 + 3.0) / 2


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


def test_sessions_sharing_a_queue_give_the_groups_of_one_clean_run(
    pytester: pytest.Pytester, experiment: Callable[..., Path], redis_server: RedisServer
) -> None:
    """Two sessions (each with locks of its own, as on two machines) take the expanded flows
    from one coordinator queue: each flow runs once, and the merged reports group as one run."""
    results = experiment(sleep=0.2)
    clean = run(pytester, "--runset-workers", "2", "--runset-run-id", "clean")
    assert clean.ret == 1, clean.stdout.str()
    expected = load_report(results / "clean")["groups"]
    sessions = []
    for who in "ab":
        lock_dir = pytester.path / f"locks-{who}"
        lock_dir.mkdir(mode=0o700)
        argv = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
            "--runset", "run-set.toml", "--runset-workers", "2",
            "--runset-coordinator", redis_server.url, "--runset-queue", "matrix-1",
            "--runset-run-id", f"queue-{who}",
        ]  # fmt: skip
        env = {**os.environ, "RUNSET_LOCK_DIR": str(lock_dir)}
        sessions.append(
            subprocess.Popen(
                argv,
                cwd=pytester.path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=120)[0] for process in sessions]
    assert {process.returncode for process in sessions} <= {0, 1}, "\n".join(outputs)
    reports = [results / f"queue-{who}" / "report.json" for who in "ab"]
    ran = [json.loads(path.read_text())["flows"] for path in reports]
    assert sorted(f["name"] for flows in ran for f in flows) == sorted(
        f"trial {v} seed {s}" for v in "ab" for s in range(1, 5)
    )
    merged = pytester.path / "merged" / "report.json"
    shards = [str(path) for path, flows in zip(reports, ran, strict=True) if flows]
    assert cli(["merge", *shards, "-o", str(merged)]) == 0
    assert json.loads(merged.read_text())["groups"] == expected

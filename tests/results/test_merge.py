"""``pytest-runset merge``: shard reports of one run-set combined into one report.

The acceptance test runs a real run-set once whole and once as two shards (split with ``-k``
and ``--deselect``) and checks the merge of the shards says what the whole run said. The other
tests use hand-written reports to reach the rules (order, conflicts, bad files) directly.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_report
from pytest_runset.cli import main
from pytest_runset.results.merge import Shard, merge_reports
from pytest_runset.results.report import run_status, summarize
from pytest_runset.results.statuses import STATUSES

RUNSET = f"""
[runset]
name = "shards"
concurrency = 2

[[flows]]
name = "alpha"
command = [{sys.executable!r}, "-c", "print('a')"]
tags = ["smoke"]

[[flows]]
name = "bravo"
command = [{sys.executable!r}, "-c", "import sys; sys.exit('bravo broke')"]

[[flows]]
name = "charlie"
command = ["true"]
skip = "not here"

[[flows]]
name = "delta"
command = [{sys.executable!r}, "-c", "import time; time.sleep(0.2)"]

[[flows]]
name = "echo"
command = [{sys.executable!r}, "-c", "print('e')"]

[[flows]]
name = "foxtrot"
command = [{sys.executable!r}, "artifact.py"]
"""

ARTIFACT_SCRIPT = """
import json, os
with open(os.path.join(os.environ["RUNSET_FLOW_DIR"], "out.txt"), "w") as handle:
    handle.write("artifact")
with open(os.environ["RUNSET_REPORT"], "w") as handle:
    json.dump({"artifacts": ["out.txt"]}, handle)
"""

COUNTS = ("total", "passed", "failed", "error", "timeout", "skipped", "not_run", "flaky")


def run(pytester: pytest.Pytester, run_id: str, *args: str) -> Path:
    pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", run_id, "-p", "no:cacheprovider", *args
    )
    return pytester.path / "runset-results" / run_id / "report.json"


def test_merged_shards_equal_the_unsharded_run(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.path.joinpath("run-set.toml").write_text(RUNSET, encoding="utf-8")
    pytester.path.joinpath("artifact.py").write_text(ARTIFACT_SCRIPT, encoding="utf-8")
    whole = run(pytester, "whole")
    # Shard 1 by keyword, shard 2 by deselecting shard 1's flows: each flow in exactly one.
    first = run(pytester, "s1", "-k", "alpha or charlie or echo")
    second = run(
        pytester, "s2",
        *[f"--deselect=run-set.toml::{slug}" for slug in ("alpha", "charlie", "echo")],
    )  # fmt: skip
    shard_flows = [f["slug"] for f in load_report(first.parent)["flows"]]
    assert shard_flows == ["alpha", "charlie", "echo"]

    out = pytester.path / "merged" / "report.json"
    # Shards given in reverse order: the merged order is still the file's.
    assert main(["merge", str(second), str(first), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "merged 2 reports" in captured.out

    merged = json.loads(out.read_text(encoding="utf-8"))
    expected = load_report(whole.parent)
    fields = ("index", "name", "slug", "nodeid", "status", "tags", "attempts")
    assert [[f[k] for k in fields] for f in merged["flows"]] == [
        [f[k] for k in fields] for f in expected["flows"]
    ]
    assert merged["status"] == expected["status"] == "failed"
    assert {k: merged["summary"][k] for k in COUNTS} == {k: expected["summary"][k] for k in COUNTS}
    assert merged["runset"] == expected["runset"]

    # Timings: wall is the longest shard's, workers add up, the summary is recomputed.
    shards = [load_report(first.parent), load_report(second.parent)]
    assert merged["wall_s"] == max(s["wall_s"] for s in shards)
    assert merged["workers"] == sum(s["workers"] for s in shards)
    durations = sum(f["duration_s"] for f in merged["flows"])
    assert merged["summary"]["sum_duration_s"] == pytest.approx(durations, abs=1e-5)
    assert merged["started_at"] == min(s["started_at"] for s in shards)
    assert merged["finished_at"] == max(s["finished_at"] for s in shards)
    assert [m["report"] for m in merged["merged_from"]] == [
        "../runset-results/s2/report.json",
        "../runset-results/s1/report.json",
    ]

    # Paths point from the merged report's directory into the shard run directories.
    by_slug = {f["slug"]: f for f in merged["flows"]}
    assert by_slug["alpha"]["shard"] == 2
    assert by_slug["alpha"]["logs"]["stdout"] == "../runset-results/s1/alpha/stdout.log"
    assert by_slug["foxtrot"]["artifacts"] == ["../runset-results/s2/foxtrot/out.txt"]
    for entry in merged["flows"]:
        for path in [*entry["logs"].values(), *entry["artifacts"]]:
            assert (out.parent / path).is_file(), path
    assert (out.parent / by_slug["bravo"]["history"][0]["dir"]).is_dir()

    # The merged HTML page sits beside it and its links reach the shards' files.
    page = (out.parent / "report.html").read_text(encoding="utf-8")
    assert "shard 1 gw" in page
    # The summary links each shard's own report and page.
    assert 'href="../runset-results/s2/report.json"' in page
    assert 'href="../runset-results/s1/report.html"' in page
    for href in ("../runset-results/s1/alpha/stdout.log", "../runset-results/s2/foxtrot/out.txt"):
        assert f'href="{href}"' in page
        assert (out.parent / unquote(href)).is_file()

    assert main(["show", str(out)]) == 1  # the merged run failed (bravo)
    assert "run-set shards, run s2+s1: failed" in capsys.readouterr().out


def test_merged_runset_shards_equal_the_unsharded_run(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """--runset-shard 1/2 and 2/2 merge back to the unsharded run, and carry their plan."""
    pytester.path.joinpath("run-set.toml").write_text(RUNSET, encoding="utf-8")
    pytester.path.joinpath("artifact.py").write_text(ARTIFACT_SCRIPT, encoding="utf-8")
    whole = run(pytester, "whole")
    first = run(pytester, "k1", "--runset-shard", "1/2")
    second = run(pytester, "k2", "--runset-shard", "2/2")
    one, two = load_report(first.parent), load_report(second.parent)
    assert {f["slug"] for f in one["flows"]}.isdisjoint(f["slug"] for f in two["flows"])
    assert one["shard"]["index"] == 1
    assert two["shard"]["index"] == 2
    assert one["shard"]["plan"] == two["shard"]["plan"]
    assert one["shard"]["balanced_by"] == "file order"  # no history without the cache

    out = pytester.path / "merged" / "report.json"
    assert main(["merge", str(first), str(second), "-o", str(out)]) == 0
    assert "conflict" not in capsys.readouterr().err
    merged = json.loads(out.read_text(encoding="utf-8"))
    expected = load_report(whole.parent)
    fields = ("index", "name", "slug", "nodeid", "status", "tags", "attempts")
    assert [[f[k] for k in fields] for f in merged["flows"]] == [
        [f[k] for k in fields] for f in expected["flows"]
    ]
    assert {k: merged["summary"][k] for k in COUNTS} == {k: expected["summary"][k] for k in COUNTS}
    assert merged["status"] == expected["status"]


def test_shards_of_different_plans_are_a_conflict_and_a_missing_shard_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = shard_report("a", [entry(0, "alpha")])
    b = shard_report("b", [entry(1, "bravo")])
    a["shard"] = {"index": 1, "total": 3, "balanced_by": "history", "plan": "1111"}
    b["shard"] = {"index": 2, "total": 3, "balanced_by": "history", "plan": "2222"}
    out = tmp_path / "out" / "report.json"
    code = main(["merge", str(save(tmp_path / "a.json", a)), str(save(tmp_path / "b.json", b)),
                 "-o", str(out)])  # fmt: skip
    printed = capsys.readouterr().err
    assert code == 1
    assert "were split by different plans" in printed
    assert "shard 3/3 not given" in printed
    assert out.is_file()

    b["shard"]["plan"] = "1111"
    code = main(["merge", str(save(tmp_path / "a.json", a)), str(save(tmp_path / "b.json", b)),
                 "-o", str(out)])  # fmt: skip
    printed = capsys.readouterr().err
    assert code == 0
    assert "different plans" not in printed
    assert "shard 3/3 not given" in printed


# --- hand-written reports --------------------------------------------------------------------


def entry(index: int | None, slug: str, status: str = "passed", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": slug.upper(),
        "slug": slug,
        "status": status,
        "attempts": 0 if status in ("not_run", "skipped") else 1,
        "duration_s": 1.0,
        "started_s": 0.0 if status not in ("not_run", "skipped") else None,
        "worker": "gw0",
        "dir": slug,
        "logs": {"stdout": f"{slug}/stdout.log", "stderr": f"{slug}/stderr.log"},
        "artifacts": [],
        "tags": [],
        "history": [],
    }
    if index is not None:
        data["index"] = index
    data.update(extra)
    return data


def shard_report(
    run_id: str, flows: list[dict[str, Any]], *, started: str = "2026-11-22T06:00:00.000Z",
    name: str = "demo", sha: str = "aa" * 32, file: str = "/nowhere/run-set.toml",
) -> dict[str, Any]:  # fmt: skip
    return {
        "schema": "pytest-runset/report@1",
        "run_id": run_id,
        "runset": {"name": name, "file": file, "sha256": sha},
        "status": "passed",
        "started_at": started,
        "finished_at": "2026-11-22T06:00:10.000Z",
        "wall_s": 10.0,
        "workers": 2,
        "flows": flows,
        "summary": {},
    }


def save(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_reports_of_different_runsets_are_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = save(tmp_path / "a" / "report.json", shard_report("a", [entry(0, "one")]))
    b = save(tmp_path / "b" / "report.json", shard_report("b", [entry(1, "two")], sha="bb" * 32))
    out = tmp_path / "m" / "report.json"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(a) in err
    assert str(b) in err
    assert "different run-sets" in err
    assert "--force" in err
    assert not out.exists()

    c = save(tmp_path / "c" / "report.json", shard_report("c", [entry(1, "two")], name="other"))
    assert main(["merge", str(a), str(c), "-o", str(out)]) == 4
    assert "'demo' vs 'other'" in capsys.readouterr().err

    assert main(["merge", str(a), str(b), "-o", str(out), "--force"]) == 0
    assert [f["slug"] for f in json.loads(out.read_text())["flows"]] == ["one", "two"]


def test_conflicting_results_are_reported_and_the_later_one_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    early = shard_report(
        "early",
        [entry(0, "one"), entry(1, "two", "failed"), entry(2, "three", "not_run")],
        started="2026-11-22T06:00:00.000Z",
    )
    late = shard_report(
        "late",
        [entry(1, "two", "passed"), entry(2, "three", "passed"), entry(3, "four", "timeout")],
        started="2026-11-22T07:00:00.000Z",
    )
    a = save(tmp_path / "a" / "report.json", early)
    b = save(tmp_path / "b" / "report.json", late)
    out = tmp_path / "report.json"
    assert main(["merge", str(b), str(a), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    conflicts = [line for line in err if line.startswith("conflict:")]
    assert len(conflicts) == 1  # not_run vs passed is no conflict
    assert "'TWO' (two)" in conflicts[0]
    assert str(a) in conflicts[0]
    assert str(b) in conflicts[0]
    assert err[-1] == "1 conflict between the reports"

    merged = json.loads(out.read_text(encoding="utf-8"))
    statuses = {f["slug"]: (f["status"], f["shard"]) for f in merged["flows"]}
    assert statuses == {
        "one": ("passed", 2),
        "two": ("passed", 1),  # finished an hour later
        "three": ("passed", 1),  # a flow that ran beats one that did not
        "four": ("timeout", 1),
    }
    assert [f["slug"] for f in merged["flows"]] == ["one", "two", "three", "four"]
    assert merged["status"] == "failed"
    assert merged["summary"]["total"] == 4
    assert merged["summary"]["timeout"] == 1


def test_order_without_index_comes_from_the_runset_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runset = save(
        tmp_path / "run-set.toml",
        "".join(f'[[flows]]\nname = "{n}"\ncommand = ["true"]\n' for n in ("z", "y", "x")),
    )
    import hashlib

    sha = hashlib.sha256(runset.read_bytes()).hexdigest()
    a = save(
        tmp_path / "a" / "report.json",
        shard_report("a", [entry(None, "x")], file=str(runset), sha=sha),
    )
    b = save(
        tmp_path / "b" / "report.json",
        shard_report("b", [entry(None, "z"), entry(None, "y")], file=str(runset), sha=sha),
    )
    out = tmp_path / "m.json"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert [f["slug"] for f in json.loads(out.read_text())["flows"]] == ["z", "y", "x"]
    assert (tmp_path / "m.html").is_file()
    assert capsys.readouterr().err == ""

    # The file changed since: the reports' own order, with a note saying so.
    runset.write_text(runset.read_text() + "# edited\n")
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert [f["slug"] for f in json.loads(out.read_text())["flows"]] == ["x", "z", "y"]
    assert "no 'index'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"schema": "other@1"}), "not a pytest-runset report (schema 'other@1'"),
        ({"drop": "wall_s"}, "field 'wall_s' is missing or not a number"),
        ({"drop": "started_at"}, "field 'started_at' is missing or not an ISO 8601 time"),
        ({"set": ("workers", "two")}, "field 'workers' is missing or not a whole number"),
        ({"set": ("runset", {"sha256": "x"})}, "field 'runset.name' is missing"),
        ({"set": ("flows", {"a": 1})}, "field 'flows' must be a list of objects"),
        ({"flow": ("slug", None)}, "flow #1: field 'slug' is missing or not a string"),
        ({"flow": ("status", "green")}, "flow #1: unknown status 'green'"),
        ({"flow": ("index", "0")}, "flow #1: field 'index' is not a whole number"),
        ({"twice": True}, "flow #2: slug 'one' appears twice in this report"),
        ({"flow": ("duration_s", "slow")}, "flow #1: field 'duration_s' is not a number"),
        ({"flow": ("started_s", [1])}, "flow #1: field 'started_s' is not a number"),
        ({"flow": ("artifacts", "x.png")}, "flow #1: field 'artifacts' is not a list of paths"),
        ('{"schema": ' + "[" * 5000 + "]" * 5000 + "}", "invalid JSON: nested too deeply"),
        ('{"x": ' + "[" * 80 + "]" * 80 + "}", "invalid JSON: nested more than 72 levels deep"),
        ('{"wall_s": NaN}', "invalid JSON: NaN is not a JSON number"),
    ],
)
def test_bad_report_files_are_one_line_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, problem: str
) -> None:
    good = save(tmp_path / "good" / "report.json", shard_report("g", [entry(0, "one")]))
    if isinstance(content, dict):
        data = copy.deepcopy(shard_report("b", [entry(0, "one")]))
        if "drop" in content:
            del data[content["drop"]]
        if "set" in content:
            data[content["set"][0]] = content["set"][1]
        if "flow" in content:
            data["flows"][0][content["flow"][0]] = content["flow"][1]
        if "twice" in content:
            data["flows"].append(entry(1, "one"))
        content = json.dumps(data)
    bad = save(tmp_path / "bad" / "report.json", content)
    out = tmp_path / "out" / "report.json"
    assert main(["merge", str(good), str(bad), "-o", str(out)]) == 4
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{bad}")
    assert problem in err
    assert "Traceback" not in err
    assert not out.exists()


def test_usage_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = save(tmp_path / "a" / "report.json", shard_report("a", [entry(0, "one")]))
    assert main(["merge", str(a)]) == 4  # -o is required
    assert "-o/--output" in capsys.readouterr().err
    assert main(["merge", str(a), str(a), "-o", str(tmp_path / "m.json")]) == 4
    assert "given twice" in capsys.readouterr().err
    assert main(["merge", str(a), "-o", str(a)]) == 4
    assert "is one of the reports being merged" in capsys.readouterr().err
    assert main(["merge", str(a), "-o", str(tmp_path / "m.html")]) == 4
    assert "name the JSON report" in capsys.readouterr().err
    assert not (tmp_path / "m.html").exists()
    missing = tmp_path / "nope" / "report.json"
    assert main(["merge", str(missing), "-o", str(tmp_path / "m.json")]) == 4
    assert capsys.readouterr().err.strip() == f"{missing}: no such report file"
    # A single report "merges" into a copy whose paths point back into its run directory.
    out = tmp_path / "elsewhere" / "report.json"
    assert main(["merge", str(a), "-o", str(out)]) == 0
    merged = json.loads(out.read_text(encoding="utf-8"))
    assert merged["flows"][0]["logs"]["stdout"] == "../a/one/stdout.log"


@settings(max_examples=40, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=25),
    data=st.data(),
)
def test_any_split_merges_back_to_the_whole(statuses: list[str], data: st.DataObject) -> None:
    flows = [entry(i, f"f{i}", status) for i, status in enumerate(statuses)]
    count = data.draw(st.integers(1, 4))
    owner = [data.draw(st.integers(0, count - 1)) for _ in flows]
    shards = [
        Shard(
            path=Path(f"/runs/s{k}/report.json"),
            report=shard_report(f"s{k}", [f for f, o in zip(flows, owner, strict=True) if o == k]),
            number=k + 1,
        )
        for k in data.draw(st.permutations(range(count)))
    ]
    result = merge_reports(shards, Path("/runs/merged/report.json"))
    assert result.conflicts == []
    merged = result.report
    assert [(f["slug"], f["status"]) for f in merged["flows"]] == [
        (f["slug"], f["status"]) for f in flows
    ]
    expected = summarize(flows, 10.0, 2 * count)
    assert {k: merged["summary"][k] for k in COUNTS} == {k: expected[k] for k in COUNTS}
    assert merged["workers"] == 2 * count
    assert merged["status"] == run_status(flows, interrupted=False)

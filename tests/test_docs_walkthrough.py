"""What a walkthrough of the docs found wrong stays fixed: the install command, the example's
flow count, a ``--lf`` recipe that can fail, shard run ids of their own, a CI artifact whose
links work, VS Code settings that keep the suite, and one answer about JUnit under xdist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NUMBERS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14}


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def fenced(doc: str, lang: str) -> list[str]:
    # Blocks inside list items are indented.
    return re.findall(rf"^[ \t]*```{lang}\n(.*?)^[ \t]*```", text(doc), re.S | re.M)


def test_no_install_from_pypi_while_it_is_not_published() -> None:
    for doc in DOCS:
        found = re.findall(r"pip install [^\n`]*pytest-runset\[", doc.read_text(encoding="utf-8"))
        assert not found, f"{doc.name}: {found}"
    readme = text("README.md")
    assert 'pip install -e ".[browser]"' in readme
    assert "pip wheel" in readme


def test_the_flow_counts_of_the_example_are_true() -> None:
    flows = text("examples/run-set.toml").count("\n[[flows]]")
    # One flow skips itself (exit code 77).
    skipped = text("examples/run-set.toml").count("exit code 77 means skipped")
    for doc in DOCS:
        said = re.findall(r"run-set\.toml`, which has (\w+) flows", doc.read_text(encoding="utf-8"))
        for word in said:
            assert NUMBERS.get(word, word) == flows, f"{doc.name}: '{word} flows', not {flows}"
    summary = re.search(r"runset example: (\d+) passed, (\d+) skipped", text("README.md"))
    assert summary is not None
    assert (int(summary[1]), int(summary[2])) == (flows - skipped, skipped)


@pytest.mark.parametrize("doc", ["docs/recipes.md"])
def test_the_lf_recipe_has_failures_to_rerun(doc: str, tmp_path: Path) -> None:
    section = text(doc).split("## Rerun what failed", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.split(" # ")[0].split()
        for line in re.findall(r"^```bash\n(.*?)^```", section, re.S | re.M)[0].splitlines()
    ]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    first = subprocess.run(
        [sys.executable, "-m", *commands[0]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 1, first.stdout
    assert "2 failed" in first.stdout
    again = subprocess.run(
        [sys.executable, "-m", *commands[1]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stdout
    assert re.search(r"2 passed, 10 deselected", again.stdout), again.stdout


def workflows() -> list[dict[str, object]]:
    return [yaml.safe_load(block) for block in fenced("docs/recipes.md", "yaml")]


def strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def test_shard_run_ids_are_new_in_every_pipeline() -> None:
    shell = "\n".join(fenced("docs/recipes.md", "bash"))
    ids = re.findall(r"--runset-run-id \"?(\S+?)\"?(?:\s|$)", shell)
    assert ids
    assert all("${run}" in run_id for run_id in ids if "shard" in run_id)
    ci = " ".join(strings(workflows()))
    for quoted, bare in re.findall(r"--runset-run-id (?:\"([^\"]+)\"|(\S+))", ci):
        run_id = quoted or bare
        assert "github.run_id" in run_id or "CI_PIPELINE_ID" in run_id, run_id


def test_the_merged_report_is_published_with_the_directories_it_links_to() -> None:
    # The shard recipe's two workflows come first; the evaluation recipe's follows.
    github, gitlab = workflows()[:2]
    steps = github["jobs"]["report"]["steps"]  # type: ignore[index]
    download = next(step for step in steps if "download-artifact" in step.get("uses", ""))
    merge = next(step for step in steps if "pytest-runset merge" in step.get("run", ""))
    upload = next(step for step in steps if "upload-artifact" in step.get("uses", ""))
    output = Path(re.search(r"-o (\S+)", merge["run"])[1])  # type: ignore[index]
    published = Path(upload["with"]["path"])
    # The report and the shards' run directories are both inside the one uploaded directory.
    assert published in output.parents
    assert published in Path(download["with"]["path"]).parents
    report = gitlab["report"]  # type: ignore[index]
    output = Path(re.search(r"-o (\S+)", " ".join(report["script"]))[1])  # type: ignore[index]
    assert any(Path(path) in output.parents for path in report["artifacts"]["paths"])
    assert "runset-results/" in gitlab["flows"]["artifacts"]["paths"]  # type: ignore[index]


def test_vs_code_settings_with_runset_keep_the_rest_of_the_suite() -> None:
    settings = [json.loads(block) for block in fenced("docs/ide-and-tools.md", "json")]
    with_runset = [s for s in settings if "--runset" in s.get("python.testing.pytestArgs", [])]
    assert with_runset
    for setting in with_runset:
        args = setting["python.testing.pytestArgs"]
        if "--runset" in args:
            positional = [arg for i, arg in enumerate(args) if not arg.startswith("-") and (
                i == 0 or args[i - 1] != "--runset")]  # fmt: skip
            assert positional, f"pytestArgs {args} collect only the flows"


def test_junit_properties_under_xdist_have_one_answer() -> None:
    xdist = text("docs/xdist.md")
    assert re.search(r"\| `--junitxml` properties [^\n]*\| same \| same \|", xdist)
    for doc in DOCS:
        said = re.search(r"xdist[^.\n]*JUnit properties are not attached", doc.read_text())
        assert said is None, f"{doc.name} contradicts docs/xdist.md"

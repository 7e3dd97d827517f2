"""The documentation's examples work as written.

Run-set snippets load, the hooks example runs and does what the page says, every `pytest` and
`pytest-runset` command in the docs uses options that exist (those that name the repository's
example files are run with --collect-only), the CI workflows parse, and the trials example runs
and groups its results.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from pytest_runset.model.loader import load_runset

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# A block whose first line is a comment naming a file (`# flows/shop.py`) is that file's text.
NAMED = re.compile(r"^#\s*([\w./-]+\.(?:py|toml))\s*$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        first = self.text.splitlines()[0] if self.text.strip() else ""
        match = NAMED.match(first)
        return match.group(1) if match else None


@cache
def blocks() -> tuple[Block, ...]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(doc, line, match.group(1), match.group(2)))
    return tuple(found)


def materialize(doc: Path, into: Path) -> None:
    """Write every named block of ``doc`` (a module, a spec file, a conftest) into ``into``."""
    for block in blocks():
        if block.doc == doc and block.file_name:
            target = into / block.file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")


def runset_blocks() -> list[Block]:
    return [
        block
        for block in blocks()
        if block.lang == "toml" and ("[[flows]]" in block.text or "[runset]" in block.text)
    ]


def yaml_strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in yaml_strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in yaml_strings(value)]
    return []


def command_lines(program: str) -> list[tuple[Block, str]]:
    """Each ``program ...`` command of the docs' shell blocks and CI workflows."""
    found = []
    for block in blocks():
        if block.lang in ("bash", "sh"):
            lines = re.sub(r"\\\n\s*", " ", block.text).splitlines()
        elif block.lang == "yaml":
            # YAML folds `run: >` and `- >` scripts into one line each.
            lines = [
                line
                for text in yaml_strings(yaml.safe_load(block.text))
                for line in text.splitlines()
            ]
        else:
            continue
        for raw in lines:
            words = raw.split(" # ")[0].split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if words[:1] == [program]:
                found.append((block, " ".join(words)))
    return found


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("QUICK", None)
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@cache
def known_options(*command: str) -> frozenset[str]:
    help_text = run([sys.executable, *command, "--help"], ROOT).stdout
    # pytest's help shows --junit-xml but not its spelling --junitxml.
    aliases = {"--junitxml"} if "--junit-xml" in help_text else set()
    return frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", help_text)) | aliases


def option_words(command: str) -> list[str]:
    return [
        word.split("=")[0] for word in command.split() if re.fullmatch(r"--[a-z][\w-]*(=.*)?", word)
    ]


def test_the_docs_have_examples_of_every_kind() -> None:
    assert len(runset_blocks()) >= 10
    assert len(command_lines("pytest")) >= 20
    assert command_lines("pytest-runset")
    assert [block for block in blocks() if block.lang == "yaml"]


@pytest.mark.parametrize("block", runset_blocks(), ids=lambda block: block.where)
def test_runset_snippet_loads(block: Block, tmp_path: Path) -> None:
    materialize(block.doc, tmp_path)
    path = tmp_path / (block.file_name or "run-set.toml")
    path.write_text(block.text, encoding="utf-8")
    runset = load_runset(path)
    assert runset.flows or "[[flows]]" not in block.text


def test_pytest_commands_in_the_docs_use_real_options() -> None:
    options = known_options("-m", "pytest")
    unknown = [
        f"{block.where}: {option} in `{command}`"
        for block, command in command_lines("pytest")
        for option in option_words(command)
        if option not in options
    ]
    assert not unknown, "\n".join(unknown)


def test_pytest_runset_commands_in_the_docs_use_real_options() -> None:
    unknown = []
    for block, command in command_lines("pytest-runset"):
        words = command.split()
        sub = words[1] if len(words) > 1 else ""
        options = known_options("-m", "pytest_runset.cli", sub)
        assert options, f"{block.where}: `pytest-runset {sub}` is not a command"
        unknown += [
            f"{block.where}: {o} in `{command}`" for o in option_words(command) if o not in options
        ]
    assert not unknown, "\n".join(unknown)


def runnable_commands(scratch: Path) -> list[tuple[Block, str, Path]]:
    """pytest commands that can run as written: those naming the repository's examples (run
    from the root), and those naming run-set files that their own page shows (run beside
    them)."""
    found = []
    for block, command in command_lines("pytest"):
        if "${" in command or "$(" in command:
            continue
        if "examples/" in command:
            found.append((block, command, ROOT))
            continue
        files = {word.split("::")[0] for word in shlex.split(command) if ".toml" in word}
        here = scratch / block.doc.stem
        materialize(block.doc, here)
        if files and all((here / name).is_file() for name in files):
            found.append((block, command, here))
    return found


def test_commands_in_the_docs_collect(tmp_path: Path) -> None:
    """Each runnable command is accepted by pytest (run with --collect-only)."""

    def check(item: tuple[int, tuple[Block, str, Path]]) -> str | None:
        number, (block, command, cwd) = item
        args = shlex.split(command)[1:]
        # Files the command would write (a JUnit file) go to the scratch directory instead.
        args = [
            re.sub(r"^(--junit-?xml=).*", rf"\g<1>{tmp_path}/junit-{number}.xml", arg)
            for arg in args
        ]
        cache_dir = tmp_path / f"cache-{number}"
        collect = ["--collect-only", "-q", "-o", f"cache_dir={cache_dir}"]
        result = run([sys.executable, "-m", "pytest", *args, *collect], cwd)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
            return f"{block.where}: `{command}` exited {result.returncode}: {' | '.join(tail)}"
        return None

    commands = runnable_commands(tmp_path / "docs")
    assert len(commands) >= 15
    assert any(cwd != ROOT for _, _, cwd in commands)
    with ThreadPoolExecutor(max_workers=2) as executor:
        problems = [p for p in executor.map(check, enumerate(commands)) if p]
    assert not problems, "\n".join(problems)


def test_ci_workflows_in_the_docs_parse() -> None:
    workflows = [block for block in blocks() if block.lang == "yaml"]
    for block in workflows:
        document = yaml.safe_load(block.text)
        assert isinstance(document, dict), block.where


def test_hooks_example_does_what_the_page_says(pytester: pytest.Pytester) -> None:
    hooks_page = ROOT / "docs" / "hooks.md"
    materialize(hooks_page, pytester.path)
    assert (pytester.path / "conftest.py").is_file()
    assert (pytester.path / "run-set.toml").is_file()
    env = {"PYTHONPATH": str(ROOT), "GITHUB_SHA": ""}

    full = run_pytest(pytester, env, "--runset", "run-set.toml")
    assert full.returncode == 1, full.stdout
    assert "full: failed -> full" in full.stdout
    summary = json.loads((pytester.path / "runset-summary.json").read_text())
    assert summary["status"] == "failed"
    assert (summary["total"], summary["passed"], summary["failed"]) == (2, 1, 1)

    quick = run_pytest(pytester, {**env, "QUICK": "1"}, "--runset", "run-set.toml")
    assert quick.returncode == 0, quick.stdout
    assert "1 passed" in quick.stdout
    report = json.loads((pytester.path / "runset-summary.json").read_text())
    assert report["total"] == 1
    run_dir = pytester.path / "runset-results" / report["run_id"]
    assert (run_dir / "smoke" / "sha.txt").read_text().strip() == "local"


def run_pytest(
    pytester: pytest.Pytester, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    full_env = {
        key: value for key, value in os.environ.items() if key not in ("QUICK", "GITHUB_SHA")
    }
    full_env.update({key: value for key, value in env.items() if value})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_trials_example_runs_and_groups(tmp_path: Path) -> None:
    trials = ROOT / "examples" / "trials"
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--runset",
            str(trials / "run-set.toml"),
            "-n",
            "2",
            "--runset-output",
            str(tmp_path),
            "--runset-run-id",
            "sweep",
        ],
        ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "sweep" / "report.json").read_text())
    names = [f"{s} seed {n}" for s in ("greedy", "annealing") for n in (1, 2, 3)]
    assert [flow["name"] for flow in report["flows"]] == names
    assert [flow["status"] for flow in report["flows"]] == ["passed"] * 6
    for flow in report["flows"]:
        assert flow["metrics"]["tour_length"] > 0
        assert (tmp_path / "sweep" / flow["dir"] / "tour.json").is_file()
    strategies = {
        group["value"]: group["metrics"]["tour_length"]
        for group in next(g for g in report["groups"] if g["by"] == "strategy")["groups"]
    }
    assert strategies["annealing"]["mean"] < strategies["greedy"]["mean"]
    assert strategies["annealing"]["n"] == 3
    table = run(
        [
            sys.executable,
            "-m",
            "pytest_runset.cli",
            "show",
            str(tmp_path / "sweep"),
            "--group-by",
            "strategy",
        ],
        ROOT,
    )
    assert table.returncode == 0, table.stderr
    assert "grouped by matrix axis strategy:" in table.stdout
    assert "metric tour_length:" in table.stdout


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    readme = ROOT / "README.md"
    materialize(readme, tmp_path)
    tour = next(
        block for block in blocks() if block.doc == readme and "tour.runset.toml -n 2" in block.text
    )
    expected = {"-n": 1, "show": 1, "--lf": 1, "::greeting": 0, "list": 0}
    seen = []
    for line in tour.text.splitlines():
        words = shlex.split(line.split(" # ")[0])
        program = {"pytest": ["-m", "pytest"], "pytest-runset": ["-m", "pytest_runset.cli"]}
        result = run([sys.executable, *program[words[0]], *words[1:]], tmp_path)
        key = next(k for k in expected if any(k in word for word in words))
        assert result.returncode == expected[key], f"`{line}`:\n{result.stdout}{result.stderr}"
        seen.append(key)
        if key == "--lf":
            assert "1 failed" in result.stdout
            assert "deselected" in result.stdout or "1 failed in" in result.stdout
        if key == "show":
            assert "broken build" in result.stdout
    assert seen == list(expected)
    latest = tmp_path / "runset-results" / "latest"
    assert (latest / "greeting" / "hello.txt").read_text().strip() == "hello from greeting"
    assert (latest / "report.html").is_file()


def documented_keys() -> set[str]:
    """Keys that have a row of their own in a reference table of the run-set docs."""
    keys = set()
    for page in ("runset-file.md", "resources.md", "scaling-out.md"):
        path = ROOT / "docs" / page
        if path.is_file():
            keys |= set(re.findall(r"^\| `([a-z_]+)`", path.read_text(encoding="utf-8"), re.M))
    return keys


def test_every_runset_key_is_in_the_reference() -> None:
    from pytest_runset.model import schema

    models = [
        schema.RunsetSettings,
        schema.FlowSpec,
        schema.PortsSettings,
        schema.ServiceSpec,
        schema.SidecarSpec,
        schema.RunsetDocument,
    ]
    keys = {name for model in models for name in model.model_fields}
    missing = sorted(keys - documented_keys())
    assert not missing, f"run-set keys without a reference row: {missing}"


def test_every_option_is_in_the_options_page() -> None:
    help_text = run([sys.executable, "-m", "pytest", "--help"], ROOT).stdout
    group = help_text.split("pytest-runset)", 1)[1].split("\n\n", 1)[0]
    options = set(re.findall(r"^\s+(--runset[a-z-]*)", group, re.M))
    ini_part = help_text.split("configuration options", 1)[1]
    inis = set(re.findall(r"^\s+(runset_[a-z_]+) ", ini_part, re.M))
    page = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(--?[\w-]+|runset_\w+)", page, re.M))
    assert len(options) >= 15
    assert inis
    missing = sorted((options | inis) - rows)
    assert not missing, f"options without a row in docs/options.md: {missing}"


def anchor_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {anchor_slug(h) for h in re.findall(r"^#+\s+(.*)$", text, re.M)}


def test_links_between_pages_resolve() -> None:
    broken = []
    pages = [*DOCS, ROOT / "benchmarks" / "README.md"]
    for page in pages:
        if not page.is_file():
            continue
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)

"""Workspaces end to end: worktree flows edit the same file without seeing each other."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report

EDIT = (
    'echo "$RUNSET_FLOW" > shared.txt; sleep 0.5; '
    'test "$(cat shared.txt)" = "$RUNSET_FLOW" && git status --porcelain > status.txt'
)


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(tmp_path / "locks"))


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_worktree_flows_are_isolated_and_cleaned_up(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    flows = "".join(
        f'[[flows]]\nname = "editor {i}"\nworkspace = "worktree"\nshell = true\n'
        f"command = {EDIT!r}\n"  # a TOML literal string: EDIT has no single quote
        for i in range(4)
    )
    write_runset("[runset]\nconcurrency = 4\n" + flows)
    (pytester.path / "shared.txt").write_text("original\n")
    (pytester.path / ".gitignore").write_text("runset-results/\n")
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "add", "-A")
    _git(pytester.path, "commit", "-q", "-m", "init")
    failing = pytester.path / "run-set.toml"
    failing.write_text(
        failing.read_text()
        + '[[flows]]\nname = "breaks"\nworkspace = "worktree"\nshell = true\n'
        + "command = 'echo broken > shared.txt; exit 1'\n"
    )
    _git(pytester.path, "commit", "-q", "-am", "add a failing flow")
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "wt")
    assert result.ret == 1, result.stdout.str()
    run_dir = pytester.path / "runset-results" / "wt"
    flows_seen = flows_by_name(load_report(run_dir))
    for i in range(4):
        assert flows_seen[f"editor {i}"]["status"] == "passed", flows_seen[f"editor {i}"]
        # Passing flows' worktrees are removed.
        assert not (run_dir / f"editor-{i}" / "workspace").exists()
    assert flows_seen["breaks"]["status"] == "failed"
    kept = run_dir / "breaks" / "workspace" / "shared.txt"
    assert kept.read_text().strip() == "broken"
    # The main checkout never saw any flow's edit.
    assert (pytester.path / "shared.txt").read_text() == "original\n"
    # Workspaces are private clones: the repository registers none of them, not even the
    # failed flow's kept one.
    worktrees = _git(pytester.path, "worktree", "list", "--porcelain")
    registered = [line for line in worktrees.splitlines() if line.startswith("worktree ")]
    assert len(registered) == 1


def test_worktree_outside_a_repository_is_a_clear_error(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "w"\nworkspace = "worktree"\ncommand = ["true"]\n')
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "nogit")
    assert result.ret == 1
    flow = flows_by_name(load_report(pytester.path / "runset-results" / "nogit"))["w"]
    assert flow["status"] == "error"
    assert "needs the run-set file inside a git repository" in flow["message"]


def test_copy_workspace_gets_a_private_copy(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    (pytester.path / "data.txt").write_text("pristine\n")
    write_runset(
        '[[flows]]\nname = "c"\nworkspace = "copy"\nshell = true\n'
        "command = 'cat data.txt > seen.txt; echo dirty > data.txt; ls runset-results || true'\n"
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "cp")
    assert result.ret == 0
    assert (pytester.path / "data.txt").read_text() == "pristine\n"


def test_a_worktree_flow_does_not_inherit_git_dir(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runset(
        '[[flows]]\nname = "w"\nworkspace = "worktree"\nshell = true\n'
        'command = \'echo "[$GIT_DIR]" > "$RUNSET_FLOW_DIR/where.txt"; '
        'git rev-parse --show-toplevel >> "$RUNSET_FLOW_DIR/where.txt"\'\n'
    )
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "add", "-A")
    _git(pytester.path, "commit", "-q", "-m", "init")
    # As when pytest runs from a git hook: GIT_DIR points at the main repository.
    monkeypatch.setenv("GIT_DIR", str(pytester.path / ".git"))
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "gd")
    assert result.ret == 0, result.stdout.str()
    flow_dir = pytester.path / "runset-results" / "gd" / "w"
    marker, toplevel = (flow_dir / "where.txt").read_text().split("\n")[:2]
    assert marker == "[]"
    assert Path(toplevel).resolve() == (flow_dir / "workspace").resolve()


def test_a_worktree_flow_cannot_leak_refs_or_config_into_the_repository(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "leaky"\nworkspace = "worktree"\nshell = true\n'
        "command = 'git tag leak && git branch leak2 && git config user.leak 1 && "
        "git update-ref refs/heads/leak3 HEAD && "
        "git -c user.name=a -c user.email=a@example.invalid commit -q --allow-empty -m x && "
        'git rev-parse HEAD > "$RUNSET_FLOW_DIR/commit.txt" && '
        "! git push -q origin HEAD:refs/heads/pushed 2>/dev/null'\n"
    )
    (pytester.path / ".gitignore").write_text("runset-results/\n")
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "add", "-A")
    _git(pytester.path, "commit", "-q", "-m", "init")
    refs = _git(pytester.path, "for-each-ref")
    config = _git(pytester.path, "config", "--local", "--list")

    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "leak")

    assert result.ret == 0, result.stdout.str()
    assert _git(pytester.path, "for-each-ref") == refs
    assert _git(pytester.path, "config", "--local", "--list") == config
    assert "leak" not in _git(pytester.path, "tag") + _git(pytester.path, "branch")
    commit = (pytester.path / "runset-results" / "leak" / "leaky" / "commit.txt").read_text()
    unknown = subprocess.run(
        ["git", "cat-file", "-e", commit.strip()],
        cwd=pytester.path,
        capture_output=True,
        check=False,
    )
    assert unknown.returncode != 0, "the flow's commit reached the repository's objects"
    # The flow passed: its workspace is gone.
    assert not (pytester.path / "runset-results" / "leak" / "leaky" / "workspace").exists()

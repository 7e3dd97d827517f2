"""Flow workspaces: private shared clones ("worktree") and plain copies, with real git and real
files. Whatever a flow does to its clone (refs, tags, config, commits) stays out of the user's
repository."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pytest_runset.resources.workspace import (
    Workspace,
    WorkspaceError,
    create_workspace,
    remove_workspace,
)

# Tests commit with a fixed identity and without the user's signing or hooks settings getting in
# the way; the module under test runs git with the user's configuration, as it would for real.
_GIT_CONFIG = (
    "-c",
    "user.name=Runset Test",
    "-c",
    "user.email=runset@example.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "init.defaultBranch=main",
)


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *_GIT_CONFIG, "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout.strip()


def registered_worktrees(repo: Path) -> list[str]:
    listing = git(repo, "worktree", "list", "--porcelain")
    return [
        line.removeprefix("worktree ")
        for line in listing.splitlines()
        if line.startswith("worktree ")
    ]


def repository_state(repo: Path) -> tuple[str, str, list[str], str]:
    """Everything of ``repo`` a flow must not change: refs, local config, worktrees, objects."""
    return (
        git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        git(repo, "config", "--local", "--list"),
        registered_worktrees(repo),
        git(repo, "count-objects", "-v"),
    )


@pytest.fixture(autouse=True)
def _no_enclosing_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever holds the temporary directory must not count as "the repository" of a test
    # directory that is meant to be outside one.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a committed run-set directory ``suite/``."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "README.txt").write_text("committed\n")
    (root / "suite" / "data").mkdir(parents=True)
    (root / "suite" / "runset.toml").write_text('[runset]\nname = "demo"\n')
    (root / "suite" / "data" / "input.txt").write_text("original\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    path = tmp_path / "locks"
    path.mkdir(mode=0o700)
    return path


def flow_dir_in(repo: Path, slug: str) -> Path:
    # As in a real run: the output directory sits inside the run-set directory, untracked.
    return repo / "suite" / "runset-output" / "run-1" / slug


# --- worktrees ---------------------------------------------------------------------------------


def test_worktree_is_detached_at_head_with_committed_files_only(repo: Path, lock_dir: Path) -> None:
    (repo / "README.txt").write_text("uncommitted edit\n")
    (repo / "suite" / "untracked.txt").write_text("not committed\n")
    flow_dir = flow_dir_in(repo, "trial")

    workspace = create_workspace(
        "worktree", source_dir=repo / "suite", flow_dir=flow_dir, lock_dir=lock_dir
    )

    assert workspace.kind == "worktree"
    assert workspace.repo == repo.resolve()
    assert git(workspace.path, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"
    assert git(workspace.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    root = flow_dir.resolve() / "workspace"
    assert (root / "README.txt").read_text() == "committed\n"
    assert (root / "suite" / "data" / "input.txt").read_text() == "original\n"
    assert not (root / "suite" / "untracked.txt").exists()
    # The main checkout keeps its own edits.
    assert (repo / "README.txt").read_text() == "uncommitted edit\n"


def test_worktree_cwd_is_the_runset_directory_inside_it(
    repo: Path, lock_dir: Path, tmp_path: Path
) -> None:
    in_subdir = create_workspace(
        "worktree", source_dir=repo / "suite", flow_dir=tmp_path / "a", lock_dir=lock_dir
    )
    assert in_subdir.path == (tmp_path / "a").resolve() / "workspace" / "suite"
    assert (in_subdir.path / "runset.toml").is_file()
    assert (in_subdir.path / "data" / "input.txt").is_file()

    at_root = create_workspace(
        "worktree", source_dir=repo, flow_dir=tmp_path / "b", lock_dir=lock_dir
    )
    assert at_root.path == (tmp_path / "b").resolve() / "workspace"
    assert (at_root.path / "suite" / "runset.toml").is_file()


def test_worktree_cwd_through_a_symlinked_source_dir(
    repo: Path, lock_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "suite-link"
    link.symlink_to(repo / "suite")

    workspace = create_workspace(
        "worktree", source_dir=link, flow_dir=tmp_path / "f", lock_dir=lock_dir
    )

    assert workspace.path == (tmp_path / "f").resolve() / "workspace" / "suite"
    assert (workspace.path / "runset.toml").is_file()


def test_concurrent_edits_in_two_worktrees_stay_apart(repo: Path, lock_dir: Path) -> None:
    workspaces = [
        create_workspace(
            "worktree",
            source_dir=repo / "suite",
            flow_dir=flow_dir_in(repo, slug),
            lock_dir=lock_dir,
        )
        for slug in ("one", "two")
    ]
    both_ready = threading.Barrier(2)

    def edit(workspace: Workspace, text: str) -> None:
        # Both write the same relative file names at the same moment.
        both_ready.wait(timeout=30)
        (workspace.path / "data" / "input.txt").write_text(text)
        (workspace.path / "scratch.txt").write_text(text)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(edit, ws, f"edited by {ws.path.parent.parent.name}\n") for ws in workspaces
        ]
        for future in futures:
            future.result()

    for workspace in workspaces:
        own = f"edited by {workspace.path.parent.parent.name}\n"
        assert (workspace.path / "data" / "input.txt").read_text() == own
        assert (workspace.path / "scratch.txt").read_text() == own
    assert (repo / "suite" / "data" / "input.txt").read_text() == "original\n"
    assert not (repo / "suite" / "scratch.txt").exists()
    assert git(repo, "diff", "--name-only") == ""


def test_refs_tags_config_and_commits_of_a_flow_stay_out_of_the_repository(
    repo: Path, lock_dir: Path
) -> None:
    git(repo, "tag", "v1")
    git(repo, "branch", "feature")
    before = repository_state(repo)
    workspace = create_workspace(
        "worktree",
        source_dir=repo / "suite",
        flow_dir=flow_dir_in(repo, "leaky"),
        lock_dir=lock_dir,
    )
    # What a flow (an agent, say) does with git in its workspace, pushing included.
    for args in (
        ("tag", "leak"),
        ("branch", "leak2"),
        ("config", "user.leak", "1"),
        ("update-ref", "refs/heads/leak3", "HEAD"),
        ("tag", "-f", "v1"),
        ("branch", "-f", "feature"),
    ):
        git(workspace.path, *args)
    (workspace.path / "data" / "input.txt").write_text("agent's edit\n")
    git(workspace.path, "commit", "-q", "-am", "agent's commit")
    commit = git(workspace.path, "rev-parse", "HEAD")
    pushed = subprocess.run(
        ["git", "-C", str(workspace.path), "push", "origin", "HEAD:refs/heads/pushed"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert pushed.returncode != 0
    assert repository_state(repo) == before
    assert (
        subprocess.run(
            ["git", "-C", str(repo), "cat-file", "-e", commit], capture_output=True, check=False
        ).returncode
        != 0
    ), "the flow's commit reached the repository's objects"
    # The workspace still fetches from the repository: a flow can compare with its branches.
    assert git(workspace.path, "rev-parse", "origin/feature") == git(repo, "rev-parse", "feature")
    assert remove_workspace(workspace, lock_dir=lock_dir, keep=False) is None
    assert repository_state(repo) == before


def test_remove_unregisters_and_deletes_the_worktree(repo: Path, lock_dir: Path) -> None:
    flow_dir = flow_dir_in(repo, "done")
    workspace = create_workspace(
        "worktree", source_dir=repo / "suite", flow_dir=flow_dir, lock_dir=lock_dir
    )
    # What a flow leaves behind: modified and untracked files, a link out of the worktree.
    (workspace.path / "data" / "input.txt").write_text("changed\n")
    (workspace.path / "new.txt").write_text("untracked\n")
    outside = repo.parent / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    (workspace.path / "link").symlink_to(outside)
    # A private clone: the user's repository has nothing to unregister, ever.
    assert registered_worktrees(repo) == [str(repo.resolve())]

    assert remove_workspace(workspace, lock_dir=lock_dir, keep=False) is None

    assert registered_worktrees(repo) == [str(repo.resolve())]
    assert not (flow_dir / "workspace").exists()
    assert flow_dir.is_dir()  # the flow's logs and results stay
    assert (outside / "precious.txt").read_text() == "keep me\n"


def test_keep_leaves_the_worktree_of_a_failed_flow(repo: Path, lock_dir: Path) -> None:
    flow_dir = flow_dir_in(repo, "failed")
    workspace = create_workspace(
        "worktree", source_dir=repo / "suite", flow_dir=flow_dir, lock_dir=lock_dir
    )
    (workspace.path / "evidence.txt").write_text("look at me\n")

    assert remove_workspace(workspace, lock_dir=lock_dir, keep=True) is None

    assert (workspace.path / "evidence.txt").read_text() == "look at me\n"
    # Still a working repository to look into, at the commit the flow started from.
    assert git(workspace.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert git(workspace.path, "status", "--porcelain") == "?? suite/evidence.txt"


def test_remove_copes_with_a_flow_that_deleted_its_worktree(repo: Path, lock_dir: Path) -> None:
    workspace = create_workspace(
        "worktree", source_dir=repo / "suite", flow_dir=flow_dir_in(repo, "rm"), lock_dir=lock_dir
    )
    subprocess.run(["rm", "-rf", str(workspace.path.parent)], check=True)

    assert remove_workspace(workspace, lock_dir=lock_dir, keep=False) is None
    assert registered_worktrees(repo) == [str(repo.resolve())]


def test_remove_never_raises_and_warns_in_one_line(
    repo: Path, lock_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = create_workspace(
        "worktree", source_dir=repo / "suite", flow_dir=tmp_path / "f", lock_dir=lock_dir
    )

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied\n(twice)", str(path))

    monkeypatch.setattr("shutil.rmtree", refuse)
    warning = remove_workspace(workspace, lock_dir=lock_dir, keep=False)

    assert warning is not None
    assert "\n" not in warning
    assert str(workspace.root) in warning


def test_outside_a_repository_is_a_one_line_error(tmp_path: Path, lock_dir: Path) -> None:
    source = tmp_path / "loose"
    source.mkdir()

    with pytest.raises(WorkspaceError) as info:
        create_workspace("worktree", source_dir=source, flow_dir=tmp_path / "f", lock_dir=lock_dir)

    message = str(info.value)
    assert message == (
        'workspace = "worktree" needs the run-set file inside a git repository: '
        f"{source} is not in one"
    )
    assert not (tmp_path / "f" / "workspace").exists()


def test_runset_dir_not_committed_at_head(repo: Path, lock_dir: Path, tmp_path: Path) -> None:
    (repo / "fresh").mkdir()
    (repo / "fresh" / "runset.toml").write_text("")

    with pytest.raises(
        WorkspaceError, match=r"no run-set directory fresh \(is it committed\?\)"
    ) as info:
        create_workspace(
            "worktree", source_dir=repo / "fresh", flow_dir=tmp_path / "f", lock_dir=lock_dir
        )

    assert "\n" not in str(info.value)
    assert registered_worktrees(repo) == [str(repo.resolve())]
    assert not (tmp_path / "f" / "workspace").exists()


def test_an_existing_workspace_directory_is_left_alone(
    repo: Path, lock_dir: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "f" / "workspace"
    existing.mkdir(parents=True)
    (existing / "mine.txt").write_text("not yours\n")

    for kind in ("worktree", "copy"):
        with pytest.raises(WorkspaceError, match="exists already"):
            create_workspace(
                kind, source_dir=repo / "suite", flow_dir=tmp_path / "f", lock_dir=lock_dir
            )

    assert (existing / "mine.txt").read_text() == "not yours\n"
    assert registered_worktrees(repo) == [str(repo.resolve())]


def test_a_repository_without_a_commit_is_a_one_line_error(tmp_path: Path, lock_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")  # no commit: HEAD names nothing

    with pytest.raises(WorkspaceError) as info:
        create_workspace("worktree", source_dir=empty, flow_dir=tmp_path / "f", lock_dir=lock_dir)

    assert str(info.value) == (
        f'workspace = "worktree" checks out HEAD of {empty.resolve()}, which names no commit '
        "(is anything committed?)"
    )
    assert registered_worktrees(empty) == [str(empty.resolve())]
    assert not (tmp_path / "f" / "workspace").exists()


def test_git_failure_reports_gits_last_line_and_leaves_nothing(
    repo: Path, lock_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A post-checkout hook (the user's global core.hooksPath) that fails the checkout.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook = hooks / "post-checkout"
    hook.write_text("#!/bin/sh\necho first >&2\necho the hook says no >&2\nexit 1\n")
    hook.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    before = repository_state(repo)

    with pytest.raises(WorkspaceError) as info:
        create_workspace(
            "worktree", source_dir=repo / "suite", flow_dir=tmp_path / "f", lock_dir=lock_dir
        )

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("git checkout for the workspace ")
    assert message.endswith(": the hook says no")
    assert not (tmp_path / "f" / "workspace").exists()
    assert repository_state(repo) == before


def test_eight_threads_create_and_remove_worktrees_at_once(repo: Path, lock_dir: Path) -> None:
    # Linked worktrees raced here for the same administrative directory under .git/worktrees
    # and needed a lock; clones only read the repository, so they need none and must not fail.
    threads, rounds = 8, 8
    start = threading.Barrier(threads)

    def one_thread(index: int) -> list[tuple[str, str | None]]:
        start.wait(timeout=30)
        outcomes = []
        for round_ in range(rounds):
            workspace = create_workspace(
                "worktree",
                source_dir=repo / "suite",
                flow_dir=flow_dir_in(repo, f"flow-{index}-{round_}"),
                lock_dir=lock_dir,
            )
            (workspace.path / "data" / "input.txt").write_text(f"{index}\n")
            seen = (workspace.path / "data" / "input.txt").read_text()
            outcomes.append((seen, remove_workspace(workspace, lock_dir=lock_dir, keep=False)))
        return outcomes

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one_thread, range(threads)))

    assert results == [[(f"{index}\n", None)] * rounds for index in range(threads)]
    assert registered_worktrees(repo) == [str(repo.resolve())]
    leftovers = list((repo / "suite" / "runset-output").glob("*/*/workspace"))
    assert leftovers == []


_SESSION_SCRIPT = """
import sys, time
from pathlib import Path
from pytest_runset.resources.workspace import create_workspace, remove_workspace

repo, lock_dir, out, go = (Path(arg) for arg in sys.argv[1:5])
# Start together with the other sessions, so that their git commands really overlap.
(out.parent / (out.name + ".ready")).touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
for index in range(8):
    ws = create_workspace(
        "worktree", source_dir=repo / "suite", flow_dir=out / str(index), lock_dir=lock_dir
    )
    warning = remove_workspace(ws, lock_dir=lock_dir, keep=False)
    assert warning is None, warning
"""


def test_concurrent_sessions_create_and_remove_workspaces_at_once(
    repo: Path, lock_dir: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    sessions = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SESSION_SCRIPT,
                str(repo),
                str(lock_dir),
                str(tmp_path / f"session-{index}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("session-*.ready"))) < len(sessions):
            assert time.monotonic() < deadline, "the sessions did not start"
            assert all(session.poll() is None for session in sessions), "a session died early"
            time.sleep(0.01)
        go.touch()
        for session in sessions:
            _out, err = session.communicate(timeout=120)
            assert session.returncode == 0, err
    finally:
        # A failed assertion must not leave sessions running on after the test.
        for session in sessions:
            if session.poll() is None:
                session.kill()
                session.wait()

    assert registered_worktrees(repo) == [str(repo.resolve())]


def test_unknown_kind_is_an_error(repo: Path, lock_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="unknown workspace kind 'none'"):
        create_workspace("none", source_dir=repo, flow_dir=tmp_path / "f", lock_dir=lock_dir)


# --- copies ------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A run-set directory with metadata and caches to skip, and a link out of it."""
    root = tmp_path / "suite"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "runset.toml").write_text("[runset]\n")
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (root / ".pytest_cache").mkdir()
    (root / ".pytest_cache" / "README.md").write_text("cache\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "vendored").mkdir()
    (root / "vendored" / ".git").write_text("gitdir: ../.git/modules/vendored\n")
    (root / "vendored" / "lib.py").write_text("Y = 2\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    (root / "shared").symlink_to(outside)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    return root


def test_copy_copies_files_and_skips_output_git_and_caches(source: Path, lock_dir: Path) -> None:
    output = source / "runset-output"
    flow_dir = output / "run-1" / "flow"
    flow_dir.mkdir(parents=True)
    (flow_dir / "stdout.log").write_text("log\n")

    workspace = create_workspace(
        "copy", source_dir=source, flow_dir=flow_dir, lock_dir=lock_dir, exclude=[output]
    )

    assert workspace == Workspace(
        kind="copy", path=flow_dir.resolve() / "workspace", repo=None, root=workspace.path
    )
    copy = workspace.path
    assert (copy / "runset.toml").read_text() == "[runset]\n"
    assert (copy / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert (copy / "vendored" / "lib.py").read_text() == "Y = 2\n"
    assert not (copy / "runset-output").exists()
    assert not (copy / ".git").exists()
    assert not (copy / "vendored" / ".git").exists()
    assert not (copy / "pkg" / "__pycache__").exists()
    assert not (copy / ".pytest_cache").exists()


def test_copy_keeps_symlinks_as_links(source: Path, lock_dir: Path, tmp_path: Path) -> None:
    workspace = create_workspace(
        "copy", source_dir=source, flow_dir=tmp_path / "f", lock_dir=lock_dir
    )

    link = workspace.path / "shared"
    assert link.is_symlink()
    assert os.readlink(link) == os.readlink(source / "shared")
    assert (workspace.path / "dangling").is_symlink()
    assert os.readlink(workspace.path / "dangling") == str(tmp_path / "nowhere")


def test_copy_never_copies_into_itself(source: Path, lock_dir: Path) -> None:
    # The caller forgot to exclude the output directory inside the source.
    flow_dir = source / "out" / "run-1" / "flow"

    workspace = create_workspace("copy", source_dir=source, flow_dir=flow_dir, lock_dir=lock_dir)

    assert (workspace.path / "runset.toml").is_file()
    assert not (workspace.path / "out" / "run-1" / "flow").exists()


def test_copy_skips_fifos(source: Path, lock_dir: Path, tmp_path: Path) -> None:
    os.mkfifo(source / "pipe")

    workspace = create_workspace(
        "copy", source_dir=source, flow_dir=tmp_path / "f", lock_dir=lock_dir
    )

    assert not (workspace.path / "pipe").exists()
    assert (workspace.path / "runset.toml").is_file()


def test_copy_of_a_missing_directory_is_an_error(tmp_path: Path, lock_dir: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist"):
        create_workspace(
            "copy", source_dir=tmp_path / "nope", flow_dir=tmp_path / "f", lock_dir=lock_dir
        )


def test_remove_copy_deletes_it_but_not_what_links_point_to(
    source: Path, lock_dir: Path, tmp_path: Path
) -> None:
    workspace = create_workspace(
        "copy", source_dir=source, flow_dir=tmp_path / "f", lock_dir=lock_dir
    )
    # A read-only directory, as Go's module cache leaves them.
    locked = workspace.path / "pkg" / "readonly"
    locked.mkdir()
    (locked / "file.txt").write_text("x\n")
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)

    assert remove_workspace(workspace, lock_dir=lock_dir, keep=False) is None

    assert not workspace.path.exists()
    assert (tmp_path / "f").is_dir()
    assert (tmp_path / "outside" / "precious.txt").read_text() == "keep me\n"
    assert (source / "runset.toml").is_file()


def test_keep_leaves_the_copy(source: Path, lock_dir: Path, tmp_path: Path) -> None:
    workspace = create_workspace(
        "copy", source_dir=source, flow_dir=tmp_path / "f", lock_dir=lock_dir
    )

    assert remove_workspace(workspace, lock_dir=lock_dir, keep=True) is None
    assert (workspace.path / "runset.toml").is_file()

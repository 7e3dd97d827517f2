"""Private working directories for flows: ``workspace = "worktree"`` and ``workspace = "copy"``.

This runs on the controller, before a flow attempt is dispatched and after it ends, so that a
worker only ever receives a plain ``cwd``. A ``worktree`` workspace is a private clone of the
run-set's repository that shares its objects (``git clone --shared``), checked out detached at
``HEAD``; a ``copy`` workspace is a copy of the run-set directory. Either lives in
``<flow_dir>/workspace``, so no flow sees another flow's (or the user's) working tree, and
nothing a flow does in its workspace (refs, tags, config, commits) reaches the user's
repository.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COPY_SKIPPED_NAMES",
    "WORKSPACE_DIR_NAME",
    "Workspace",
    "WorkspaceError",
    "create_workspace",
    "remove_workspace",
]

#: The workspace's directory inside the flow directory.
WORKSPACE_DIR_NAME = "workspace"

#: Names a ``copy`` workspace never copies, at any depth: repository metadata (a copy is not a
#: checkout, and a ``.git`` *file* would point back into the user's repository) and caches that
#: belong to the source tree and would only mislead the flow.
COPY_SKIPPED_NAMES = frozenset({".git", "__pycache__", ".pytest_cache"})

# One git command (a checkout of a big repository, a hook) may be slow, but never endless: the
# flow waits for it before its own clock starts.
GIT_TIMEOUT_S = 600.0

# Repository-locating variables git exports to hooks and aliases. When pytest itself runs from a
# git hook (pre-commit, pre-push), they would point our git commands at the hook's repository
# and index instead of the run-set's. The list is `git rev-parse --local-env-vars`.
# Variables that point git at one repository; a worktree flow must not inherit them, or its git
# commands would act on the main checkout instead of its worktree.
GIT_LOCAL_ENV_VARS = _GIT_LOCAL_ENV_VARS = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_CONFIG",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_DIR",
    "GIT_GRAFT_FILE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_PREFIX",
    "GIT_REPLACE_REF_BASE",
    "GIT_SHALLOW_FILE",
    "GIT_WORK_TREE",
)


class WorkspaceError(Exception):
    """A workspace could not be created; ``str()`` is one line that says why."""

    def __init__(self, message: str) -> None:
        # Flow messages and report lines are single lines; a path or a git message with a
        # newline in it must not break them.
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class Workspace:
    """A flow's private working directory.

    ``path`` is the flow's cwd: for a worktree, the worktree plus the run-set directory's path
    inside the repository, so relative paths in commands keep working. ``repo`` is the
    repository's root for worktrees (``None`` for copies). ``root`` is the top of the workspace
    (the worktree root or the copy), which is what gets removed; ``None`` means "work it out".
    """

    kind: str
    path: Path
    repo: Path | None
    root: Path | None = None


def create_workspace(
    kind: str,
    *,
    source_dir: Path,
    flow_dir: Path,
    lock_dir: Path,
    exclude: Sequence[Path] = (),
) -> Workspace:
    """Create the workspace of one flow attempt in ``<flow_dir>/workspace``.

    ``kind`` is ``"worktree"`` or ``"copy"``; ``source_dir`` is the run-set file's directory.

    - ``worktree``: a private clone of the repository containing ``source_dir`` that shares its
      objects, checked out detached at ``HEAD`` (committed files only: uncommitted changes of
      the main checkout are not in it, and submodules are not initialized). Refs, tags, config
      and commits the flow makes stay in the clone. The run-set directory must be committed at
      ``HEAD``. ``lock_dir`` is not needed any more (cloning only reads the repository) and is
      kept for callers.
    - ``copy``: a copy of ``source_dir``. Symbolic links are copied as links, never followed.
      Skipped: every path in ``exclude`` (the output directory, which usually lives inside
      ``source_dir``), ``flow_dir`` itself (so the copy never contains itself), names in
      :data:`COPY_SKIPPED_NAMES` (``.git``, ``__pycache__``, ``.pytest_cache``) at any depth, and
      sockets, FIFOs and device files (which cannot be copied, and reading a FIFO would hang).

    Raises :class:`WorkspaceError` when it cannot; nothing is left behind then.
    """
    if kind == "worktree":
        return _create_worktree(source_dir=source_dir, flow_dir=flow_dir, lock_dir=lock_dir)
    if kind == "copy":
        return _create_copy(source_dir=source_dir, flow_dir=flow_dir, exclude=exclude)
    raise WorkspaceError(f'unknown workspace kind {kind!r}: expected "worktree" or "copy"')


def remove_workspace(workspace: Workspace, *, lock_dir: Path, keep: bool) -> str | None:
    """Remove a workspace after its flow, unless ``keep`` (the flow failed: leave it to look at).

    Either kind is deleted (a clone leaves nothing to unregister in the repository it came
    from). Never raises: returns a one-line warning when something could not be removed, else
    ``None``.
    """
    if keep:
        return None
    try:
        # A worktree workspace is a clone of its own: deleting it leaves nothing in the
        # repository it came from.
        root = workspace.root or workspace.path
        error = _rmtree(root)
        if error is not None:
            return _one_line(f"could not remove workspace {root}: {error}")
        return None
    except Exception as exc:
        # The flow's result is already decided; a cleanup problem must only ever be a warning.
        return _one_line(f"could not remove workspace {workspace.path}: {exc}")


# --- worktrees ---------------------------------------------------------------------------------

# What ``git push`` from a workspace is sent to instead of the user's repository: a URL no git
# can reach, so the push fails with git's own message and never writes a ref there.
PUSH_DISABLED = "runset-disabled://a flow's workspace cannot push to the repository it came from"


def _create_worktree(*, source_dir: Path, flow_dir: Path, lock_dir: Path) -> Workspace:
    """A private clone sharing the repository's objects, checked out (detached) at its HEAD.

    Not a linked ``git worktree``: a linked worktree shares refs, config and the object store
    with the user's repository, so a flow's ``git tag``, ``git branch``, ``git config`` or
    commit would land there. A ``git clone --shared`` borrows the objects read-only (through
    ``objects/info/alternates``) and has refs, config, index and new objects of its own; its
    ``origin`` still fetches from the repository but cannot push to it. Cloning only reads the
    repository, so concurrent flows and sessions need no lock (``lock_dir`` is not used).
    """
    repo, prefix = _locate_repository(source_dir)
    root = flow_dir.resolve() / WORKSPACE_DIR_NAME
    if root.exists() or root.is_symlink():
        # Checked here, not left to git: the cleanup after a failed clone would delete it.
        raise WorkspaceError(f"cannot create a worktree at {root}: it exists already")
    head = _git(repo, "rev-parse", "--verify", "HEAD^{commit}")
    if head.returncode != 0:
        raise WorkspaceError(
            f'workspace = "worktree" checks out HEAD of {repo}, which names no commit '
            "(is anything committed?)"
        )
    commit = head.stdout.strip()
    flow_dir.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[Path, tuple[str, ...]]] = [
        (repo, ("clone", "--quiet", "--shared", "--no-checkout", "--", str(repo), str(root))),
        (root, ("remote", "set-url", "--push", "origin", PUSH_DISABLED)),
        (root, ("checkout", "--quiet", "--detach", commit)),
    ]
    for cwd, args in steps:
        result = _git(cwd, *args)
        if result.returncode != 0:
            # git may have left half a clone or half a checkout behind.
            _rmtree(root)
            raise WorkspaceError(
                f"git {args[0]} for the workspace {root} failed in {repo}: {_last_line(result)}"
            )
    path = root / prefix
    if not path.is_dir():
        # The run-set directory exists in the main checkout but is not committed, so the flow
        # would start in a directory that is not there.
        _rmtree(root)
        raise WorkspaceError(
            f'workspace = "worktree" checks out HEAD of {repo}, which has no run-set '
            f"directory {prefix.as_posix()} (is it committed?)"
        )
    return Workspace(kind="worktree", path=path, repo=repo, root=root)


def _locate_repository(source_dir: Path) -> tuple[Path, Path]:
    """The repository root containing ``source_dir``, and ``source_dir`` relative to it."""
    if not source_dir.is_dir():
        raise WorkspaceError(f"run-set directory {source_dir} does not exist")
    # --show-prefix is git's own answer for the relative part, so symlinked paths (git reports
    # the real top level) need no guessing here.
    result = _git(source_dir, "rev-parse", "--show-toplevel", "--show-prefix")
    if result.returncode != 0:
        if "not a git repository" in result.stderr:
            raise WorkspaceError(
                'workspace = "worktree" needs the run-set file inside a git repository: '
                f"{source_dir} is not in one"
            )
        raise WorkspaceError(
            f"cannot find the git repository of {source_dir}: {_last_line(result)}"
        )
    lines = result.stdout.split("\n")
    if len(lines) < 2 or not lines[0]:
        # Inside a .git directory git prints no top level (and a bare repository has none).
        raise WorkspaceError(
            'workspace = "worktree" needs the run-set file inside the working tree of a git '
            f"repository: {source_dir} is not in one"
        )
    return Path(lines[0]), Path(lines[1])


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``git -C cwd args...``; failures are returned, except git missing or hanging."""
    env = {key: value for key, value in os.environ.items() if key not in _GIT_LOCAL_ENV_VARS}
    # Git's messages are matched (and shown) in English, whatever the user's locale.
    env["LC_ALL"] = "C"
    env["LANGUAGE"] = "C"
    # Never wait for a password or an editor: nobody is there to answer.
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        return subprocess.run(
            ["git", "-C", str(cwd), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise WorkspaceError(
            'workspace = "worktree" needs git, and no git executable was found on PATH'
        ) from None
    except subprocess.TimeoutExpired:
        raise WorkspaceError(
            f"git {' '.join(args)} in {cwd} did not finish within {GIT_TIMEOUT_S:.0f} s"
        ) from None
    except OSError as exc:
        raise WorkspaceError(f"cannot run git in {cwd}: {exc.strerror or exc}") from None


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if lines:
        return lines[-1]
    return f"git exited with status {result.returncode}"


# --- copies ------------------------------------------------------------------------------------


def _create_copy(*, source_dir: Path, flow_dir: Path, exclude: Sequence[Path]) -> Workspace:
    if not source_dir.is_dir():
        raise WorkspaceError(f"run-set directory {source_dir} does not exist")
    source = Path(os.path.realpath(source_dir))
    root = flow_dir.resolve() / WORKSPACE_DIR_NAME
    if root.exists() or root.is_symlink():
        raise WorkspaceError(f"cannot copy {source} to {root}: it exists already")
    # copytree hands ``ignore`` directories under ``source`` (already real, and it does not
    # descend into links), so ``directory/name`` is compared as is; exclusions are made real
    # once. The flow directory is always excluded: it usually lives under the output directory
    # inside ``source``, and copying it would copy the copy being made.
    skipped = {os.path.realpath(path) for path in (*exclude, flow_dir)}

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored: set[str] = set()
        for name in names:
            full = os.path.join(directory, name)
            if name in COPY_SKIPPED_NAMES or full in skipped or _is_special_file(full):
                ignored.add(name)
        return ignored

    try:
        flow_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, root, symlinks=True, ignore=ignore)
    except shutil.Error as exc:
        _rmtree(root)
        raise WorkspaceError(f"cannot copy {source} to {root}: {_copy_errors(exc)}") from None
    except OSError as exc:
        _rmtree(root)
        raise WorkspaceError(f"cannot copy {source} to {root}: {exc}") from None
    return Workspace(kind="copy", path=root, repo=None, root=root)


def _is_special_file(path: str) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        # Gone already, or unreadable: let copytree report it if it matters.
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def _copy_errors(exc: shutil.Error) -> str:
    """The first of copytree's collected errors, and how many more there were."""
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    if not errors:
        return str(exc)
    first = errors[0]
    text = f"{first[0]}: {first[2]}" if isinstance(first, tuple) and len(first) == 3 else str(first)
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return text


# --- removal -----------------------------------------------------------------------------------


def _rmtree(path: Path) -> str | None:
    """Delete ``path`` (never following links out of it); the error as one line, or ``None``."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_dir():
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return _one_line(str(exc))
        return None
    try:
        shutil.rmtree(path)
        return None
    except FileNotFoundError:
        return None
    except OSError:
        pass
    # Flows leave read-only directories behind (Go's module cache, for one), which cannot be
    # emptied: make the tree writable and try once more.
    _make_writable(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _one_line(str(exc))
    return None


def _make_writable(top: Path) -> None:
    owner_rwx = stat.S_IRWXU

    def chmod(directory: str) -> None:
        # os.chmod follows links and there is no lchmod on Linux: a link to a directory outside
        # the workspace must never be touched.
        try:
            if not os.path.islink(directory):
                os.chmod(directory, os.stat(directory).st_mode | owner_rwx)
        except OSError:
            pass

    chmod(str(top))
    for directory, subdirectories, _files in os.walk(top):
        for name in subdirectories:
            # Top-down: fixed before os.walk tries to list it.
            chmod(os.path.join(directory, name))


def _one_line(text: str) -> str:
    return " ".join(text.split())

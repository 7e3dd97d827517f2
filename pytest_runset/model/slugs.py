"""Flow names to directory names ("slugs").

A slug is what a flow's output directory, its pytest node id and its report entry are keyed by,
so it must be safe on every filesystem, stable between runs and unique within a run-set.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

MAX_SLUG_LENGTH = 64
_HASH_LENGTH = 8
_UNSAFE_RUN = re.compile(r"[^a-z0-9._-]+")
# A flow slug must never look like another flow's retry directory (``<slug>-retryN``).
_RETRY_SUFFIX = re.compile(r"-retry\d+$")
# Names the run directory itself uses; a flow may not take them.
RESERVED_SLUGS = frozenset(
    {"report.json", "report.html", "journal.jsonl", "services", "run.lock", "latest", "auth"}
)


def _short_hash(name: str) -> str:
    data = name.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:_HASH_LENGTH]


def _fit(base: str, suffix: str) -> str:
    """``base + suffix`` cut to the length limit without leaving a dangling separator."""
    room = MAX_SLUG_LENGTH - len(suffix)
    return base[:room].rstrip("-.") + suffix


def slugify(name: str) -> str:
    """The base slug of a flow name (before de-duplication).

    Lower-case; every run of characters outside ``[a-z0-9._-]`` becomes one ``-``; leading and
    trailing ``-``/``.`` are trimmed (so never ``.``, ``..`` or a hidden directory); names longer
    than 64 characters keep a short hash of the full name so that two long names sharing a
    prefix still differ; an empty result becomes ``flow-<hash>``.
    """
    slug = _UNSAFE_RUN.sub("-", name.lower()).strip("-.")
    if not slug:
        return "flow-" + _short_hash(name)
    if len(slug) > MAX_SLUG_LENGTH:
        slug = _fit(slug, "-" + _short_hash(name))
    return slug


def _is_free(candidate: str, taken: set[str]) -> bool:
    return (
        candidate not in taken
        and candidate not in RESERVED_SLUGS
        and not _RETRY_SUFFIX.search(candidate)
    )


def unique_slugs(names: Iterable[str]) -> list[str]:
    """Slugs for ``names`` in order, unique case-insensitively.

    A clash is resolved by appending ``-2``, ``-3``, ... and checking again until the
    candidate is free, so a flow literally named ``login-2`` cannot collide with the second
    ``login`` either.
    """
    taken: set[str] = set()
    slugs: list[str] = []
    for name in names:
        base = slugify(name)
        candidate = base
        counter = 2
        while not _is_free(candidate, taken):
            candidate = _fit(base, f"-{counter}")
            counter += 1
        taken.add(candidate)
        slugs.append(candidate)
    return slugs


def attempt_dir_name(slug: str, attempt: int) -> str:
    """Directory name of a flow's attempt: ``slug`` first, then ``slug-retry1``, ..."""
    return slug if attempt <= 1 else f"{slug}-retry{attempt - 1}"


class UnsafePathError(ValueError):
    """A flow directory would resolve outside its run directory."""


def flow_dir(run_dir: Path, dir_name: str) -> Path:
    """The directory of one flow attempt, proven to lie directly inside ``run_dir``."""
    separators = {"/", os.sep, os.altsep or os.sep, "\0"}
    if not dir_name or dir_name in (".", "..") or any(s in dir_name for s in separators):
        raise UnsafePathError(f"unsafe flow directory name {dir_name!r}")
    candidate = run_dir / dir_name
    # A plain name lies directly inside run_dir, unless a link was planted under it: only
    # then is it resolved (resolving every flow's path costs a syscall per path component).
    if os.path.islink(candidate) and candidate.resolve().parent != run_dir.resolve():
        raise UnsafePathError(f"flow directory {candidate} resolves outside {run_dir}")
    return candidate


def suffixed_slug(base: str, suffix: str, taken: set[str]) -> str:
    """``base + suffix`` within the slug length, made unique like any slug (``-2``, ...)."""
    candidate = _fit_suffix(base, suffix)
    counter = 2
    while candidate.lower() in taken:
        candidate = _fit_suffix(base, f"{suffix}-{counter}")
        counter += 1
    return candidate


def _fit_suffix(base: str, suffix: str) -> str:
    return base[: MAX_SLUG_LENGTH - len(suffix)].rstrip("-.") + suffix

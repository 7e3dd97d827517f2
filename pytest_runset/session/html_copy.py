"""``--runset-html PATH``: a copy of each run-set's HTML page where the user asked for it.

The page itself is rendered by :mod:`pytest_runset.results.html`; this module only decides
where the session's copies go (one per run-set of the session) and reports a copy that cannot
be written. The session's runs come from ``config.stash[RUNS]``, whoever ran them (the own
pool or the pytest-xdist controller).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.model.slugs import slugify
from pytest_runset.results.html import HTML_NAME, write_html
from pytest_runset.session.settings import RUNS


def html_copy_target(path: Path, runset_name: str, taken: Iterable[Path]) -> Path:
    """Where ``--runset-html PATH`` puts the page of one of several run-sets of a session:
    ``<stem>-<runset slug><suffix>``, numbered if two run-sets share a name."""
    base = slugify(runset_name) or "runset"
    used = set(taken)
    candidate = path.with_name(f"{path.stem}-{base}{path.suffix}")
    number = 2
    while candidate in used:
        candidate = path.with_name(f"{path.stem}-{base}-{number}{path.suffix}")
        number += 1
    return candidate


def write_html_copy(config: pytest.Config, report: Mapping[str, Any], path: Path) -> Path | None:
    """``--runset-html PATH`` for one run-set's report (called after its report.json).

    With one run-set the page is PATH; with several, each run-set's page is
    :func:`html_copy_target` of PATH, in collection order. A page that cannot be written is a
    one-line message; the run's results are already on disk.
    """
    runs = config.stash.get(RUNS, None)
    runset = report.get("runset")
    if runs is None or not isinstance(runset, Mapping):
        return None
    target = path if path.is_absolute() else config.invocation_params.dir / path
    if target.is_dir():  # --runset-html some/dir/ means some/dir/report.html
        target = target / HTML_NAME
    run = runs.get(str(runset.get("file")))
    if run is None:
        return None
    if len(runs) > 1:
        taken: list[Path] = []
        for key, other in runs.items():
            taken.append(html_copy_target(target, other.runset.name, taken))
            if key == str(runset.get("file")):
                target = taken[-1]
                break
    try:
        return write_html(report, run.directory.path, target)
    except OSError as exc:
        message = f"pytest-runset: cannot write --runset-html {target}: {exc.strerror or exc}"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        return None

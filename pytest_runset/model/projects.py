"""``[[runset.projects]]``: every browser flow once per project, as flows of their own.

A project is a name and browser options (``device = "Pixel 5"``, a viewport, a locale, ...),
as in Playwright Test. The loader expands each browser flow into one flow per project, after
every other expansion: ``login`` in projects ``desktop`` and ``mobile`` becomes the flows
``login-desktop`` and ``login-mobile`` (their slugs and directories), named
``login [desktop]``, whose pytest items are ``run-set.toml::login[desktop]`` and
``run-set.toml::login[mobile]``, so ``-k mobile`` selects a project. A flow's
``projects = [...]`` restricts it to those projects. Command flows, and callables without a
browser, are not multiplied: they run once, in no project.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_runset.model.browser_options import BrowserOptions, resolve_profile
from pytest_runset.model.flows import Flow, RunsetError
from pytest_runset.model.messages import flow_label
from pytest_runset.model.slugs import RESERVED_SLUGS, suffixed_slug

if TYPE_CHECKING:
    from pytest_runset.model.browser_options import ProjectSpec
    from pytest_runset.model.schema import FlowSpec, RunsetSettings

__all__ = ["expand_projects"]


def expand_projects(
    shown: Path, flows: Sequence[Flow], specs: Sequence[FlowSpec], settings: RunsetSettings
) -> tuple[Flow, ...]:
    """``flows`` with each browser flow replaced by its copies, one per project.

    ``specs[flow.index]`` is the table a flow was made from (its ``projects`` list).
    """
    projects = {project.name: project for project in settings.projects}
    for flow in flows:
        _check_restriction(shown, flow, specs[flow.index], projects)
    if not projects:
        return tuple(flows)
    taken = {flow.slug.lower() for flow in flows} | set(RESERVED_SLUGS)
    expanded: list[Flow] = []
    for flow in flows:
        if not flow.browser:
            expanded.append(flow)
            continue
        wanted = specs[flow.index].projects
        for name, project in projects.items():
            if wanted is not None and name not in wanted:
                continue
            slug = suffixed_slug(flow.slug, f"-{name.lower()}", taken)
            taken.add(slug.lower())
            expanded.append(_in_project(flow, name, project.options(), slug))
    return tuple(expanded)


def _check_restriction(
    shown: Path, flow: Flow, spec: FlowSpec, projects: dict[str, ProjectSpec]
) -> None:
    if spec.projects is None:
        return
    where = f"{shown}: {flow_label(flow.index, spec.name)}, field 'projects'"
    if not flow.browser:
        raise RunsetError(f"{where}: only browser flows run in projects")
    for name in spec.projects:
        if name not in projects:
            known = ", ".join(projects) or "none defined in [[runset.projects]]"
            raise RunsetError(f"{where}: unknown project {name!r} (projects: {known})")


def _in_project(flow: Flow, project: str, options: BrowserOptions, slug: str) -> Flow:
    levels = flow.browser_profile.levels if flow.browser_profile is not None else ()
    # The project's options sit between [runset.browser] and the flow's own table.
    merged = (*levels[:1], (options, None), *levels[1:])
    profile = resolve_profile(merged)
    return dataclasses.replace(
        flow,
        slug=slug,
        name=f"{flow.name} [{project}]",
        node_name=f"{flow.item_name}[{project}]",
        project=project,
        browser_profile=profile,
        viewport=profile.viewport,
    )

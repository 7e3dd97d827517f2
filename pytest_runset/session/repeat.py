"""pytest-repeat's ``--count N`` for flows: each flow runs N times, as N items.

pytest-repeat parametrizes test functions (``test_x[1-3]``, ``test_x[2-3]``, ...); a flow is
no function, so the same is done here, at collection: the items of flow ``login`` are
``run-set.toml::login[1-3]`` ... ``login[3-3]``, each a flow of its own with slug (and run
directory) ``login-1`` ... ``login-3``, so ``-k``, ``--lf`` and the report treat them as the
separate runs they are. The xdist controller expands the same way, so both sides agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from pytest_runset.model.flows import Flow
from pytest_runset.model.slugs import RESERVED_SLUGS, suffixed_slug


def repeat_count(config: pytest.Config) -> int:
    """``--count`` when pytest-repeat is loaded and asks for more than one run, else 1."""
    count = config.getoption("count", default=None)
    return count if isinstance(count, int) and count > 1 else 1


def repeated(config: pytest.Config, flows: Sequence[Flow]) -> list[tuple[Flow, str]]:
    """Each flow with its item name: itself and its slug, or N numbered copies of it."""
    count = repeat_count(config)
    if count == 1:
        return [(flow, flow.item_name) for flow in flows]
    # Only the copies have directories: ``login`` itself keeps none, so ``login-1`` is free.
    taken = set(RESERVED_SLUGS)
    expanded: list[tuple[Flow, str]] = []
    for flow in flows:
        for number in range(1, count + 1):
            slug = suffixed_slug(flow.slug, f"-{number}", taken)
            taken.add(slug.lower())
            name = f"{flow.name} [{number}-{count}]"
            item = _numbered(flow.item_name, f"{number}-{count}")
            copy = dataclasses.replace(flow, slug=slug, name=name, node_name=item)
            expanded.append((copy, item))
    return expanded


def _numbered(item: str, number: str) -> str:
    """``login[1-3]``, or ``login[mobile-1-3]`` for a flow's copy in a project."""
    if item.endswith("]") and "[" in item:
        return f"{item[:-1]}-{number}]"
    return f"{item}[{number}]"

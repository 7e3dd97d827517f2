"""The xdist controller finds a flow by its item's node id, whatever the item is named: a
project's copy (``login[mobile]``, slug ``login-mobile``) and a pytest-repeat copy
(``login[2-3]``, slug ``login-2``) included."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pytest_runset.model.flows import Flow
from pytest_runset.model.loader import load_runset
from pytest_runset.xdist.items import FlowItems

RUNSET = """
[[runset.projects]]
name = "desktop"

[[runset.projects]]
name = "mobile"

[[flows]]
name = "login"
steps = [{ goto = "/" }]

[[flows]]
name = "script"
command = ["true"]
"""


def flows(tmp_path: Path) -> tuple[str, tuple[Flow, ...]]:
    path = tmp_path / "run-set.toml"
    path.write_text(RUNSET, encoding="utf-8")
    return str(path.resolve()), load_runset(path).flows


def test_a_projects_copy_is_found_by_its_item_name_not_its_slug(tmp_path: Path) -> None:
    key, loaded = flows(tmp_path)
    items = FlowItems(tmp_path)
    for flow in loaded:
        items.add(key, flow, flow.item_name)
    assert [flow.slug for flow in loaded] == ["login-desktop", "login-mobile", "script"]
    assert items.key("run-set.toml::login[mobile]") == (key, "login-mobile")
    assert items.key("run-set.toml::login[desktop]") == (key, "login-desktop")
    assert items.key("run-set.toml::script") == (key, "script")
    # Slugs are not item names; other files and other items are no flows of this session.
    assert items.key("run-set.toml::login-mobile") is None
    assert items.key("run-set.toml::login") is None
    assert items.key("other.toml::script") is None
    assert items.key("test_x.py::test_y") is None
    assert items.key("run-set.toml::script::extra") is None


def test_collected_node_ids_give_every_selected_flow_with_its_node_id(tmp_path: Path) -> None:
    key, loaded = flows(tmp_path)
    items = FlowItems(tmp_path)
    for flow in loaded:
        items.add(key, flow, flow.item_name)
    # -k mobile: the workers collected one project copy and nothing else of the run-set.
    items.collect(["run-set.toml::login[mobile]", "test_other.py::test_a"])
    assert items.collected == [(key, "login-mobile")]
    flow, nodeid = items.flows[(key, "login-mobile")]
    assert (flow.project, nodeid) == ("mobile", "run-set.toml::login[mobile]")
    assert items.flows[(key, "login-desktop")][1] == ""  # not collected: no node id
    # Every worker reports its collection; the first one counts.
    items.collect(["run-set.toml::script"])
    assert items.collected == [(key, "login-mobile")]


def test_a_repeated_copy_is_found_by_its_numbered_item_name(tmp_path: Path) -> None:
    key, loaded = flows(tmp_path)
    items = FlowItems(tmp_path)
    mobile = loaded[1]
    # What session/repeat.py makes of the mobile copy under pytest-repeat's --count 3.
    second = dataclasses.replace(mobile, slug="login-mobile-2", node_name="login[mobile-2-3]")
    items.add(key, second, second.item_name)
    assert items.key("run-set.toml::login[mobile-2-3]") == (key, "login-mobile-2")

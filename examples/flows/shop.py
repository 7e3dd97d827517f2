"""Python flows for the example run-set: each function is one flow (``callable = ...``).

Parameters are injected by name: ``page`` (a fresh page in a fresh browser context),
``base_url``, ``flow_dir`` (this flow's output directory), ``flow``, ``env``...
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect


def sign_in(page: Page, user: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {user}")


def search_items(page: Page, flow_dir: Path) -> None:
    """Alice searches her list; a screenshot of the result is kept as an artifact."""
    sign_in(page, "alice", "wonderland")
    search = page.locator("#search")
    search.fill("mil")
    search.press("Enter")
    expect(page.locator("#result")).to_have_text("1 found")
    page.screenshot(path=flow_dir / "search.png")


def api_health(base_url: str, flow: Any) -> None:
    """No browser: plain HTTP checks of the app's API."""
    with urllib.request.urlopen(f"{base_url}/health", timeout=10) as response:
        assert response.status == 200, f"/health answered {response.status}"
    with urllib.request.urlopen(f"{base_url}/api/items", timeout=10) as response:
        data = json.load(response)
    assert data == {"items": []}, f"an anonymous client sees items: {data}"
    print(f"{flow.name}: API healthy")

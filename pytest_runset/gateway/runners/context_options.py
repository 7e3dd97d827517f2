"""The keyword arguments of a browser flow's ``browser.new_context(...)`` (stdlib only).

The controller sends the flow's context options with Playwright's names
(:class:`~pytest_runset.gateway.protocol.ContextOptions`). A ``device`` is spread in first, from
the worker's own Playwright (``playwright.devices``), and the flow's explicit options win over
it, as ``{**devices["iPhone 13"], "locale": "de-DE"}`` does in a Playwright script.
"""

from __future__ import annotations

from typing import Any

from pytest_runset.gateway.protocol import AttemptSpec
from pytest_runset.gateway.runners.browser_host import BrowserUnavailable

# Descriptor keys Playwright's new_context does not take.
_NOT_CONTEXT = ("default_browser_type",)


def context_options(spec: AttemptSpec, playwright: Any) -> dict[str, Any]:
    """The flow's context options, its device's descriptor spread in under them."""
    browser = spec.get("browser") or {}
    wanted: dict[str, Any] = dict(browser.get("context") or {})
    options: dict[str, Any] = {}
    device = wanted.pop("device", None)
    if device:
        options.update(device_descriptor(playwright, str(device), str(browser.get("name"))))
    options.update(wanted)
    return options


def device_descriptor(playwright: Any, device: str, engine: str) -> dict[str, Any]:
    """Playwright's descriptor of ``device`` as new_context keywords; raises
    :class:`BrowserUnavailable` for a name this host's Playwright does not know."""
    try:
        descriptor = dict(playwright.devices[device])
    except KeyError:
        raise BrowserUnavailable(
            f"device {device!r} is unknown to this host's Playwright (another version?)"
        ) from None
    for key in _NOT_CONTEXT:
        descriptor.pop(key, None)
    if engine == "firefox":
        # Firefox has no mobile emulation; Playwright refuses is_mobile there.
        descriptor.pop("is_mobile", None)
    return descriptor

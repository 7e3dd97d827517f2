"""Remote browser endpoints (``--runset-browser-endpoint``): which kind of connection a URL asks
for. Stdlib only: the browser runner inside gateways reads it too."""

from __future__ import annotations

CDP_PREFIX = "cdp+"


def check_endpoint(url: str) -> str:
    """``"playwright"`` for a ``ws(s)://`` Playwright server, ``"cdp"`` for an explicit
    ``cdp+http(s)://`` / ``cdp+ws(s)://`` Chrome DevTools endpoint; else :class:`ValueError`."""
    text = url.strip()
    if text.startswith(CDP_PREFIX):
        rest = text[len(CDP_PREFIX) :]
        if rest.startswith(("http://", "https://", "ws://", "wss://")) and "://" in rest:
            return "cdp"
        raise ValueError(f"{url!r}: cdp+ must be followed by an http(s):// or ws(s):// URL")
    if text.startswith(("ws://", "wss://")) and len(text.split("://", 1)[1]) > 0:
        return "playwright"
    raise ValueError(
        f"{url!r}: not a ws:// or wss:// Playwright server URL (a Chrome DevTools endpoint "
        "needs the explicit cdp+http://... form)"
    )


def cdp_url(url: str) -> str:
    """The URL Playwright's ``connect_over_cdp`` takes (without the ``cdp+`` opt-in prefix)."""
    text = url.strip()
    return text[len(CDP_PREFIX) :] if text.startswith(CDP_PREFIX) else text

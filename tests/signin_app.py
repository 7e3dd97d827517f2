"""A small web app for the browser-options and sign-in tests (and benchmarks/persona_login.py).

- ``/`` shows what the browser says about itself: user agent, viewport width, language,
  time zone (filled in by a script, so it is the page's own view).
- ``/login`` is a sign-in form; a good sign-in takes ``signin_delay_s`` (like a password
  hash), counts itself, sets a session cookie and goes to ``/home``.
- ``/home`` greets a signed-in user, or says "Please sign in"; ``/home?flow=NAME`` also
  records whom it greeted for that flow (``homes``), the app's own view of a flow's identity.
- ``/count`` is the number of successful sign-ins so far.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PASSWORD = "s3cret-pw"

_INFO_PAGE = """<!doctype html><html><head><title>info</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
<pre id="ua"></pre><pre id="width"></pre><pre id="language"></pre><pre id="zone"></pre>
<script>
document.getElementById("ua").textContent = navigator.userAgent;
// The layout viewport (innerWidth is off under mobile emulation in some Chromium builds).
document.getElementById("width").textContent = String(document.documentElement.clientWidth);
document.getElementById("language").textContent = navigator.language;
document.getElementById("zone").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone;
</script></body></html>"""

_LOGIN_PAGE = """<!doctype html><html><head><title>sign in</title></head><body>
<form method="post" action="/login">
<input id="user" name="user"><input id="password" name="password" type="password">
<button id="go" type="submit">Sign in</button></form></body></html>"""


class SignInApp:
    """The app's state: sessions and the count of sign-ins."""

    def __init__(self, signin_delay_s: float = 0.3) -> None:
        self.signin_delay_s = signin_delay_s
        self.signins = 0
        self.sessions: dict[str, str] = {}
        self.homes: dict[str, str | None] = {}
        self.signed_in: list[str] = []  # the user of every successful sign-in, in order
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _user(self) -> str | None:
                for part in self.headers.get("Cookie", "").split(";"):
                    key, _, value = part.strip().partition("=")
                    if key == "session":
                        with app.lock:
                            return app.sessions.get(value)
                return None

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if self.path == "/":
                    self._send(200, _INFO_PAGE)
                elif self.path == "/login":
                    self._send(200, _LOGIN_PAGE)
                elif url.path == "/home":
                    user = self._user()
                    for flow in parse_qs(url.query).get("flow", []):
                        with app.lock:
                            app.homes[flow] = user
                    text = f"Welcome, {user}" if user else "Please sign in"
                    self._send(200, f"<!doctype html><title>home</title><h1>{text}</h1>")
                elif self.path == "/count":
                    self._send(200, str(app.signins))
                else:
                    self._send(404, "not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                user = form.get("user", [""])[0]
                if form.get("password", [""])[0] != PASSWORD:
                    self._send(403, "<!doctype html><title>denied</title><h1>Wrong password</h1>")
                    return
                time.sleep(app.signin_delay_s)
                token = secrets.token_hex(8)
                with app.lock:
                    app.signins += 1
                    app.signed_in.append(user)
                    app.sessions[token] = user
                self._send(303, "", {"Location": "/home", "Set-Cookie": f"session={token}; Path=/"})

        return Handler


def serve(signin_delay_s: float = 0.3) -> Iterator[tuple[str, SignInApp]]:
    """The app in a thread; yields its base URL and state."""
    app = SignInApp(signin_delay_s)
    server = ThreadingHTTPServer(("127.0.0.1", 0), app.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", app
    finally:
        server.shutdown()
        server.server_close()

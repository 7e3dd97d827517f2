"""A small shop-list web app for the example run-set and the browser tests (stdlib only).

    python3 app.py --port 8000          # then open http://127.0.0.1:8000/

Pages: ``/login`` (alice/wonderland or bob/builder), ``/items`` (the signed-in user's list,
with a search box and a tooltip), ``/items/new`` (a form: text, select, checkbox),
``/prefs`` (a cookie and a localStorage value, to show flows do not share them),
``/health``, and ``/api/items`` (JSON). State lives in memory, per browser session, so
parallel flows never see each other's items.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import secrets
import sys
import threading
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

USERS = {"alice": "wonderland", "bob": "builder"}
DEFAULT_ITEMS = ("Milk", "Bread")
CATEGORIES = ("groceries", "tools", "books")

_STYLE = """
body { font-family: sans-serif; margin: 2rem; }
#tooltip { display: none; } .help:hover + #tooltip { display: inline; }
.flash { background: #efe; padding: .5rem; }
"""


def page(title: str, body: str, script: str = "") -> bytes:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}<script>{script}</script></body></html>"
    ).encode()


class Store:
    """Sessions (cookie ``sid``) and each session's items."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, dict[str, Any]] = {}

    def login(self, user: str) -> str:
        sid = secrets.token_hex(16)
        with self.lock:
            self.sessions[sid] = {"user": user, "items": [], "flash": ""}
            for name in DEFAULT_ITEMS:
                self.sessions[sid]["items"].append(
                    {"name": name, "category": "groceries", "urgent": False}
                )
        return sid

    def get(self, sid: str | None) -> dict[str, Any] | None:
        with self.lock:
            return self.sessions.get(sid or "")

    def logout(self, sid: str | None) -> None:
        with self.lock:
            self.sessions.pop(sid or "", None)


class Handler(BaseHTTPRequestHandler):
    store: Store
    server_version = "ExampleShop/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- helpers -----------------------------------------------------------------------------
    def _sid(self) -> str | None:
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        morsel = cookie.get("sid")
        return morsel.value if morsel else None

    def _session(self) -> dict[str, Any] | None:
        return self.store.get(self._sid())

    def _send(
        self,
        body: bytes,
        status: int = 200,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._send(b"", HTTPStatus.SEE_OTHER, headers={"Location": location, **(headers or {})})

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length).decode("utf-8", "replace")
        return {key: values[-1] for key, values in parse_qs(data).items()}

    # -- routes ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlparse(self.path).path
        routes = {
            "/": self._home,
            "/health": self._health,
            "/login": self._login_page,
            "/items": self._items,
            "/items/new": self._new_item_page,
            "/prefs": self._prefs,
            "/api/items": self._api_items,
        }
        handler = routes.get(path)
        if handler is None:
            self._send(page("Not found", "<h1>Not found</h1>"), HTTPStatus.NOT_FOUND)
        else:
            handler()

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if path == "/login":
            self._login()
        elif path == "/logout":
            self.store.logout(self._sid())
            self._redirect("/login", {"Set-Cookie": "sid=; Path=/; Max-Age=0"})
        elif path == "/items/new":
            self._add_item()
        else:
            self._send(page("Not found", "<h1>Not found</h1>"), HTTPStatus.NOT_FOUND)

    def _home(self) -> None:
        self._redirect("/items" if self._session() else "/login")

    def _health(self) -> None:
        self._send(b"ok\n", content_type="text/plain; charset=utf-8")

    def _login_page(self, error: str = "") -> None:
        alert = f"<p role='alert' id='error'>{html.escape(error)}</p>" if error else ""
        body = (
            "<h1>Sign in</h1>"
            f"{alert}"
            "<form method='post' action='/login'>"
            "<label>Username <input id='username' name='username' autocomplete='off'></label>"
            "<label>Password <input id='password' name='password' type='password'></label>"
            "<button type='submit'>Sign in</button>"
            "</form>"
        )
        status = HTTPStatus.UNAUTHORIZED if error else HTTPStatus.OK
        self._send(page("Sign in - Example Shop", body), status)

    def _login(self) -> None:
        form = self._form()
        user = form.get("username", "")
        if USERS.get(user) != form.get("password"):
            self._login_page("Invalid username or password")
            return
        sid = self.store.login(user)
        self._redirect("/items", {"Set-Cookie": f"sid={sid}; Path=/; HttpOnly; SameSite=Lax"})

    def _items(self) -> None:
        session = self._session()
        if session is None:
            self._redirect("/login")
            return
        flash = session.pop("flash", "")
        session["flash"] = ""
        rows = "".join(
            f"<li data-category='{html.escape(item['category'])}'>"
            f"{html.escape(item['name'])}{' (urgent)' if item['urgent'] else ''}</li>"
            for item in session["items"]
        )
        body = (
            f"<h1>Welcome, {html.escape(session['user'])}</h1>"
            + (f"<p class='flash' id='flash'>{html.escape(flash)}</p>" if flash else "")
            + f"<p id='count'>{len(session['items'])} items</p>"
            f"<ul id='items'>{rows}</ul>"
            "<p><a href='/items/new'>Add item</a></p>"
            "<p><input id='search' placeholder='Search'> <span id='result'></span></p>"
            "<p><span class='help'>What is this?</span>"
            "<span id='tooltip'>Your shopping list</span></p>"
            "<p><button id='dismiss'>Dismiss</button></p>"
            "<form method='post' action='/logout'><button>Sign out</button></form>"
        )
        script = """
console.log('items page ready');
document.getElementById('search').addEventListener('keydown', (event) => {
  if (event.key !== 'Enter') return;
  const query = event.target.value.toLowerCase();
  const names = [...document.querySelectorAll('#items li')].map((li) => li.textContent);
  const hits = names.filter((name) => name.toLowerCase().includes(query));
  document.getElementById('result').textContent = hits.length + ' found';
});
document.getElementById('dismiss').addEventListener('click', () => {
  const flash = document.getElementById('flash');
  if (flash) flash.hidden = true;
});
setTimeout(() => {
  const late = document.createElement('p');
  late.id = 'late';
  late.textContent = 'Loaded later';
  document.body.appendChild(late);
}, 300);
"""
        self._send(page(f"Items of {session['user']} - Example Shop", body, script))

    def _new_item_page(self) -> None:
        if self._session() is None:
            self._redirect("/login")
            return
        options = "".join(f"<option value='{c}'>{c.title()}</option>" for c in CATEGORIES)
        body = (
            "<h1>New item</h1>"
            "<form method='post' action='/items/new'>"
            "<label>Name <input id='name' name='name' required></label>"
            f"<label>Category <select id='category' name='category'>{options}</select></label>"
            "<label><input type='checkbox' id='urgent' name='urgent' value='1'> Urgent</label>"
            "<button type='submit'>Save</button>"
            "</form>"
        )
        self._send(page("New item - Example Shop", body))

    def _add_item(self) -> None:
        session = self._session()
        if session is None:
            self._redirect("/login")
            return
        form = self._form()
        name = form.get("name", "").strip()
        category = form.get("category", "groceries")
        if not name or category not in CATEGORIES:
            self._send(page("Bad item", "<h1>Bad item</h1>"), HTTPStatus.BAD_REQUEST)
            return
        urgent = form.get("urgent") == "1"
        session["items"].append({"name": name, "category": category, "urgent": urgent})
        session["flash"] = f"Saved {name}"
        self._redirect("/items")

    def _prefs(self) -> None:
        body = (
            "<h1>Preferences</h1>"
            "<p>Stored theme: <span id='stored'></span></p>"
            "<p>Cookie: <span id='cookie'></span></p>"
            "<button id='remember'>Remember dark theme</button>"
        )
        script = """
function show() {
  document.getElementById('stored').textContent = localStorage.getItem('theme') || 'none';
  const match = document.cookie.match(/(?:^|; )pref=([^;]*)/);
  document.getElementById('cookie').textContent = match ? match[1] : 'none';
}
document.getElementById('remember').addEventListener('click', () => {
  localStorage.setItem('theme', 'dark');
  document.cookie = 'pref=dark; path=/; max-age=3600';
  show();
});
show();
"""
        self._send(page("Preferences - Example Shop", body, script))

    def _api_items(self) -> None:
        session = self._session()
        items = session["items"] if session else []
        self._send(
            json.dumps({"items": items}).encode(),
            content_type="application/json",
        )


def make_server(port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (0: any free port), not yet serving."""
    handler = type("BoundHandler", (Handler,), {"store": Store()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _exit_with(parent: int) -> None:
    """Stop when the process that started us is gone (it may have been SIGKILLed)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process exits"
    )
    args = parser.parse_args(argv)
    server = make_server(args.port, args.host)
    if args.exit_with_parent:
        threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    print(f"serving on http://{args.host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`testbed ui`: a live page of one lab, served by the standard library from the package (no CDN, no build).
The page draws the lab (the graph, as SVG), follows changes within a second or two, shows a pod's details when
it is clicked, runs a probe matrix and shows it as a coloured grid, and traces a flow, highlighting its hops on
the picture. It only reads and probes: nothing it serves changes the lab.

Safety, as Jupyter does it: it binds to 127.0.0.1 unless told otherwise, every request must carry the random
token its URL shows (another local page cannot drive probes), and the Host header must name the address it
serves on (no DNS rebinding)."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from testbed import events, lab, state
from testbed.errors import TestbedError
from testbed.observe import graph, matrix
from testbed.observe.describe import describe
from testbed.observe.status import collect
from testbed.observe.trace import trace

MAX_BODY = 64 * 1024


class Page:
    """What the handler serves, for one lab; the status and the picture are drawn once per change."""

    def __init__(self, name: str, token: str) -> None:
        self.name, self.token = name, token
        self.lock = threading.Lock()
        self.cached: dict[str, Any] = {}

    def version(self) -> str:
        """Changes when the lab's desired state (pods, Services, policies, readiness) or its events change."""
        digest = hashlib.sha256()
        for path in (state.lab_dir(self.name) / "state.json", state.run_dir(self.name) / events.FILE):
            try:
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            except OSError:
                digest.update(b"-")
        return digest.hexdigest()[:16]

    def lab(self) -> dict[str, Any]:
        version = self.version()
        with self.lock:
            if self.cached.get("version") != version:
                status = collect(self.name)
                _, plan = lab.synced_plan(self.name)
                svg = graph.render(graph.dot(plan, status, services=True), "svg").decode()
                self.cached = {"version": version, "status": status, "svg": svg[svg.find("<svg"):]}
            return self.cached

    def matrix(self, body: dict[str, Any]) -> dict[str, Any]:
        cells = matrix.run(self.name, list(body.get("namespaces") or []), list(body.get("pods") or []),
                           [int(p) for p in body.get("ports") or [80]], list(body.get("protocols") or ["tcp"]),
                           body.get("via") or "pod")
        return {"cells": matrix.as_json(cells)}

    def trace(self, body: dict[str, Any]) -> dict[str, Any]:
        _, plan = lab.current_plan(self.name)
        return trace(plan, str(body["from"]), str(body["to"]), str(body.get("protocol") or "tcp"),
                     float(body.get("timeout") or 2))


def handler(page: Page, allowed_hosts: set[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "testbed-ui"

        def log_message(self, *_: Any) -> None:  # quiet: the terminal shows the URL, not every request
            return

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                        "script-src 'self' 'unsafe-inline'; img-src 'self' data:")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, data: Any, code: int = 200) -> None:
            self._send(code, json.dumps(data).encode(), "application/json")

        def _allowed(self) -> dict[str, list[str]] | None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            token = (query.get("token") or [""])[0] or self.headers.get("X-Testbed-Token", "")
            if self.headers.get("Host", "") not in allowed_hosts:
                self._json({"error": "unexpected Host header"}, HTTPStatus.FORBIDDEN)
                return None
            if not secrets.compare_digest(token, page.token):
                self._json({"error": "a token is needed: use the URL `testbed ui` printed"}, HTTPStatus.FORBIDDEN)
                return None
            return query

        def do_GET(self) -> None:
            query = self._allowed()
            if query is None:
                return
            path = urlparse(self.path).path
            try:
                if path == "/":
                    html = resources.files("testbed.observe.ui").joinpath("index.html").read_bytes()
                    self._send(200, html, "text/html; charset=utf-8")
                elif path == "/api/version":
                    self._json({"version": page.version()})
                elif path == "/api/lab":
                    self._json(page.lab())
                elif path == "/api/describe":
                    self._json(describe(page.name, (query.get("ref") or [""])[0]))
                elif path == "/api/events":
                    self._json(events.read(page.name)[-int((query.get("tail") or ["50"])[0]):])
                else:
                    self._json({"error": "no such page"}, HTTPStatus.NOT_FOUND)
            except TestbedError as err:
                self._json({"error": str(err)}, HTTPStatus.BAD_REQUEST)

        def do_POST(self) -> None:
            if self._allowed() is None:
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json({"error": "too large"}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                path = urlparse(self.path).path
                if path == "/api/matrix":
                    self._json(page.matrix(body))
                elif path == "/api/trace":
                    self._json(page.trace(body))
                else:
                    self._json({"error": "no such action"}, HTTPStatus.NOT_FOUND)
            except (TestbedError, ValueError, KeyError, TypeError) as err:
                self._json({"error": f"{type(err).__name__}: {err}"}, HTTPStatus.BAD_REQUEST)

    return Handler


def serve(name: str, host: str, port: int) -> tuple[ThreadingHTTPServer, str]:
    """The server, bound (OSError when the port is taken), and the URL to open."""
    token, hosts = secrets.token_urlsafe(24), set[str]()
    server = ThreadingHTTPServer((host, port), handler(Page(name, token), hosts))
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    hosts |= {f"{n}:{bound}" for n in ({shown, "localhost"} if host in ("127.0.0.1", "::1") else {shown})}
    server.daemon_threads = True
    return server, f"http://{shown}:{bound}/?token={token}"

"""A loopback-only server for a few generated files: the dashboard and the dbt documentation site.

Each page is read afresh on every request, so a rebuild shows without a restart, and a page that is not
generated yet answers 503 with how to generate it. Nothing else is served: the routes are a fixed list.
Exposing these pages wider is a decision for a real web server with authentication, not for this one.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackSite(ThreadingHTTPServer):
    """Serves ``routes`` (URL path -> file) on a loopback address; ``what`` and ``missing`` word its errors."""

    daemon_threads = True

    def __init__(
        self,
        routes: Mapping[str, Path],
        *,
        host: str,
        port: int,
        what: str,
        missing: str,
        content_security_policy: str,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the {what} is served on loopback only, not on {host!r}")
        self.routes = dict(routes)
        self.what = what
        self.missing = missing
        self.content_security_policy = content_security_policy
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests, notebooks); the CLI calls ``serve_forever`` instead."""
        thread = threading.Thread(target=self.serve_forever, name=f"{self.what}-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackSite
    server_version = "dataops"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        page = self.server.routes.get(self.path.split("?", 1)[0].split("#", 1)[0])
        if page is None:
            self.send_error(HTTPStatus.NOT_FOUND, f"only the {self.server.what} is served here")
            return
        try:
            content = page.read_bytes()
        except FileNotFoundError:
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, self.server.missing)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", CONTENT_TYPES[page.suffix])
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", self.server.content_security_policy)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

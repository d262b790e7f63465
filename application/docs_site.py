"""Serving the dbt documentation site on loopback: the three files dbt generates and nothing else."""

from __future__ import annotations

import ipaddress
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dataops.transform.docs import SITE_FILES

TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
# dbt's page runs its own inline code; it may load its two files from here and reach no other server.
CONTENT_SECURITY_POLICY = (
    "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


class DocsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path, host: str, port: int) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the docs are served on loopback only, not on {host!r}")
        self.folder = folder
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests); the CLI calls ``serve_forever``."""
        thread = threading.Thread(target=self.serve_forever, name="docs-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: DocsServer
    server_version = "dataops-docs"
    sys_version = ""

    def do_GET(self) -> None:
        name = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
        if name not in SITE_FILES:
            self.send_error(HTTPStatus.NOT_FOUND, "only the documentation site is served here")
            return
        try:
            content = (self.server.folder / name).read_bytes()
        except FileNotFoundError:
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "not generated yet: `dataops docs serve` generates it")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", TYPES[Path(name).suffix])
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a reader's page loads are not worth a terminal line each


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

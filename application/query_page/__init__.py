"""The query page: self-service ad hoc queries in a browser, served by the query gateway (`dataops api serve`).

The page is static files only (vanilla JavaScript, no library, nothing from another server). It holds no
privilege of its own: the analyst signs in with a gateway token, and every request the page makes, the
catalog it browses included, goes through ``POST /v1/query`` with that token, so the gateway's
authentication, authorisation, brakes and audit apply to the page exactly as to any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

STATIC = Path(__file__).parent / "static"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# Own files only, and requests to this server only: a page that holds a token runs no one else's code.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
PATH = "/query/"


def router() -> APIRouter:
    """The page's routes: ``/query/`` and its files; ``/`` leads there."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse(PATH)

    @routes.get(PATH)
    def index() -> Response:
        return _file("index.html")

    @routes.get(PATH + "{name}")
    def asset(name: str) -> Response:
        if name not in FILES:
            raise HTTPException(404, "no such file on the query page")
        return _file(name)

    return routes


def _file(name: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=FILES[name], headers=HEADERS)

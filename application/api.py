"""The gateway's HTTP door (FastAPI): the same rules as `dataops sql` for tools off the machine.

``POST /v1/query`` with ``{"sql": "...", "format": "json" | "csv" | "arrow"}`` and ``Authorization: Bearer
<token>`` (docs/governance.md has the response shapes). Every request, whatever it asks and however it ends, is
audited exactly once by :class:`AuditedDoor`, which wraps the whole application: it reads the body itself and
refuses it past the size limit as it is read (a declared ``Content-Length`` or a chunked body alike), before
anything parses it or looks at the token; it records the request's audit line before the first byte of the
answer goes out, and answers 500 instead when the line cannot be written.

A ``parquet`` format answers with one Parquet file; the query page (application/query_page) is served beside
the endpoint and calls it like any other client.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from application import query_page
from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.formats import to_arrow, to_csv, to_json, to_parquet
from dataops.governance.gateway import Denied, Gateway
from dataops.governance.policy import Policy
from dataops.governance.users import AuthenticationError, FailedTokens, SlowedDown, User, authenticate_token
from dataops.governance.worker import pool

log = logging.getLogger(__name__)
MEDIA = {
    "json": "application/json",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
BEARER = re.compile(r"Bearer ([A-Za-z0-9_\-]+)", re.IGNORECASE)
STATUS = {"invalid": 400, "denied": 403, "braked": 403, "error": 500}
BRAKE_STATUS = {"concurrency_user": 429, "concurrency_server": 503}


class QueryRequest(BaseModel):
    sql: str
    format: str = "json"


def _entry(request: Request) -> audit.Entry:
    entry: audit.Entry = request.scope["state"]["audit"]
    entry["handled"] = True
    return entry


def create_app(settings: Settings, policy: Policy, warm_workers: int = 0) -> FastAPI:
    """The HTTP door; ``warm_workers`` query workers are started with the server (more start on demand)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(pool().warm, warm_workers)
        yield
        pool().close()

    app = FastAPI(title="dataops query gateway", version="1.1", lifespan=lifespan)
    gateway = Gateway(settings, policy)
    failed_tokens = FailedTokens(settings, policy.server)
    app.add_middleware(AuditedDoor, settings=settings, max_bytes=policy.server.max_request_bytes)

    @app.get("/v1/health")
    def health(request: Request) -> dict[str, str]:
        _entry(request).update(allowed=True, outcome="ok")
        return {"status": "ok"}

    @app.post("/v1/query")
    def query(body: QueryRequest, request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
        entry = _entry(request)
        entry.statement(body.sql)
        source = f"http:{request.client.host if request.client else 'unknown'}"
        user = _authenticated(settings, failed_tokens, entry, source, authorization)
        if isinstance(user, Response):
            return user
        entry.update(user=user.name, role=user.role)
        if body.format not in MEDIA:
            entry.refuse("invalid", f"format {body.format!r} is not one of {sorted(MEDIA)}")
            return JSONResponse({"error": "bad_format", "message": f"format must be one of {sorted(MEDIA)}"}, 422)
        try:
            result = gateway.run(user, body.sql, door="http", entry=entry)
        except Denied as denied:
            status = BRAKE_STATUS.get(denied.brake or "", STATUS.get(denied.outcome, 403))
            error = {"invalid": "invalid_query", "error": "gateway_error"}.get(denied.outcome, "denied")
            headers = {"Retry-After": "1"} if status in (429, 503) else None
            payload = {"error": error, "outcome": denied.outcome, "brake": denied.brake, "message": denied.reason}
            return JSONResponse(payload, status, headers=headers)
        headers = {"X-Truncated": str(result.truncated).lower(), "X-Row-Count": str(len(result.rows))}
        if body.format == "csv":
            return PlainTextResponse(to_csv(result), media_type=MEDIA["csv"], headers=headers)
        if body.format == "arrow":
            return Response(to_arrow(result), media_type=MEDIA["arrow"], headers=headers)
        if body.format == "parquet":
            return Response(to_parquet(result), media_type=MEDIA["parquet"], headers=headers)
        return Response(to_json(result), media_type=MEDIA["json"], headers=headers)

    app.include_router(query_page.router())  # the query page: static files that call /v1/query
    return app


def _authenticated(
    settings: Settings, failed_tokens: FailedTokens, entry: audit.Entry, source: str, authorization: str | None
) -> User | Response:
    """The request's user, or the answer that refuses it (a source that failed too often is slowed down first)."""
    try:
        failed_tokens.check(source)
        match = BEARER.fullmatch(authorization.strip()) if authorization else None
        if authorization and match is None:
            raise AuthenticationError("send `Authorization: Bearer <token>`", failed_token=True)
        return authenticate_token(settings, match.group(1) if match else None)
    except SlowedDown as slowed:
        entry.refuse("unauthenticated", f"authentication: {slowed}", brake="failed_tokens")
        return JSONResponse(
            {"error": "too_many_failed_tokens", "message": str(slowed), "retry_after": slowed.retry_after},
            429,
            headers={"Retry-After": str(slowed.retry_after)},
        )
    except AuthenticationError as exc:
        if exc.failed_token:
            failed_tokens.failed(source)
        entry.refuse("unauthenticated", f"authentication: {exc}")
        payload = {"error": "unauthenticated", "message": str(exc)}
        return JSONResponse(payload, 401, headers={"WWW-Authenticate": "Bearer"})


class AuditedDoor:
    """ASGI middleware: the body read under the size limit, and one audit line per request."""

    def __init__(self, app: ASGIApp, settings: Settings, max_bytes: int) -> None:
        self.app = app
        self.settings = settings
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("unknown", 0)
        entry = audit.Entry("http", None, method=scope["method"], path=scope["path"], client=client[0])
        entry["started"] = time.monotonic()
        scope.setdefault("state", {})["audit"] = entry
        body, complete = await self._read(scope, receive)
        entry.statement(_statement(body))
        if not complete:
            entry.refuse(
                "too_large", f"the request body exceeds {self.max_bytes:,} bytes; refused unread", "request_size"
            )
            entry["request_bytes"] = len(body)
            payload = {"error": "request_too_large", "message": f"requests are limited to {self.max_bytes} bytes"}
            await self._answer(send, entry, 413, payload, close=True)
            return
        entry["request_bytes"] = len(body)
        state = _Answer(self, entry, send)
        try:
            await self.app(scope, _replay(body, receive), state.send)
        except Exception:
            log.exception("the query gateway failed on %s %s", scope["method"], scope["path"])
            if state.started:
                return
            entry.refuse("error", "the gateway failed; the request was not answered")
            await self._answer(send, entry, 500, {"error": "gateway_error", "message": "the gateway failed"})

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes, bool]:
        """The body, read no further than the limit; complete is False when it passed it."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode(errors="replace").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            return b"", False
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return bytes(body), True
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return bytes(body[: self.max_bytes]), False
            if not message.get("more_body", False):
                return bytes(body), True

    async def record(self, entry: audit.Entry, status: int, first_body: bytes) -> bool:
        entry["http_status"] = status
        entry["duration_ms"] = round((time.monotonic() - entry.pop("started")) * 1000)
        if not entry.pop("handled", False):  # the application answered before any handler (404, 405, 422)
            if status < 400:
                entry.update(allowed=True, outcome="ok")
            else:
                entry.refuse("invalid" if status < 500 else "error", f"HTTP {status}: {_reason(first_body)}")
        try:
            await anyio.to_thread.run_sync(audit.record, self.settings, entry)
        except Exception:
            log.exception("the audit line could not be written; the request is not answered")
            return False
        return True

    async def _answer(
        self, send: Send, entry: audit.Entry, status: int, payload: dict[str, Any], close: bool = False
    ) -> None:
        entry["handled"] = True
        ok = await self.record(entry, status, b"")
        status, payload = (status, payload) if ok else (500, {"error": "gateway_error", "message": "audit failed"})
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Answer:
    """Holds the response's start until its first body: the audit line is written in between."""

    def __init__(self, door: AuditedDoor, entry: audit.Entry, send: Send) -> None:
        self.door, self.entry, self._send = door, entry, send
        self.pending: Message | None = None
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.pending = message
            return
        if self.pending is not None and message["type"] == "http.response.body":
            start, self.pending = self.pending, None
            self.started = True
            if not await self.door.record(self.entry, int(start["status"]), message.get("body", b"")[:2000]):
                body = json.dumps({"error": "gateway_error", "message": "audit failed"}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await self._send({"type": "http.response.start", "status": 500, "headers": headers})
                await self._send({"type": "http.response.body", "body": body})
                return
            await self._send(start)
        await self._send(message)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _statement(body: bytes) -> str | None:
    """What the request asked, for the audit: its ``sql`` when the body is the JSON asked for, else the body
    itself (the audit keeps a bounded prefix)."""
    if not body:
        return None
    text = body.decode(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return str(data["sql"]) if isinstance(data, dict) and isinstance(data.get("sql"), str) else text


def _reason(body: bytes) -> str:
    try:
        data = json.loads(body.decode(errors="replace"))
    except ValueError:
        return body.decode(errors="replace")[:300]
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail[:5])[:300]
    return str(detail or data)[:300]

"""The gateway's HTTP door (FastAPI): the same rules as `dataops sql` for tools off the machine.

Every call is authenticated by a bearer token, authorised and audited; results come back as JSON, CSV or
Arrow. Oversized requests are refused before they are read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.formats import to_arrow, to_csv, to_json
from dataops.governance.gateway import Denied, Gateway
from dataops.governance.policy import Policy
from dataops.governance.users import AuthenticationError, authenticate_token

MAX_REQUEST_BYTES = 64 * 1024
MEDIA = {"json": "application/json", "csv": "text/csv", "arrow": "application/vnd.apache.arrow.stream"}


class QueryRequest(BaseModel):
    sql: str
    format: str = "json"


def create_app(settings: Settings, policy: Policy) -> FastAPI:
    app = FastAPI(title="dataops query gateway", version="1.0")
    gateway = Gateway(settings, policy)

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Response:
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            audit.record(
                settings,
                {
                    "user": None,
                    "role": None,
                    "door": "http",
                    "statement": None,
                    "allowed": False,
                    "reason": f"request of {length} bytes exceeds {MAX_REQUEST_BYTES}",
                },
            )
            return JSONResponse(
                {"error": "request_too_large", "message": f"requests are limited to {MAX_REQUEST_BYTES} bytes"}, 413
            )
        response: Response = await call_next(request)
        return response

    @app.get("/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/query")
    def query(body: QueryRequest, authorization: Annotated[str | None, Header()] = None) -> Response:
        token = authorization.removeprefix("Bearer ").strip() if authorization else None
        try:
            user = authenticate_token(settings, token)
        except AuthenticationError as exc:
            audit.record(
                settings,
                {
                    "user": None,
                    "role": None,
                    "door": "http",
                    "statement": body.sql,
                    "allowed": False,
                    "reason": f"authentication: {exc}",
                },
            )
            return JSONResponse({"error": "unauthenticated", "message": str(exc)}, 401)
        if body.format not in MEDIA:
            return JSONResponse({"error": "bad_format", "message": f"format must be one of {sorted(MEDIA)}"}, 422)
        try:
            result = gateway.run(user, body.sql, door="http")
        except Denied as denied:
            return JSONResponse({"error": "denied", "brake": denied.brake, "message": denied.reason}, 403)
        headers = {"X-Truncated": str(result.truncated).lower(), "X-Row-Count": str(len(result.rows))}
        if body.format == "csv":
            return PlainTextResponse(to_csv(result), media_type=MEDIA["csv"], headers=headers)
        if body.format == "arrow":
            return Response(to_arrow(result), media_type=MEDIA["arrow"], headers=headers)
        return Response(to_json(result), media_type=MEDIA["json"], headers=headers)

    return app

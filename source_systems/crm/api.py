"""The mock CRM's HTTP API: Salesforce-like objects over JSON, as a connector would meet them.

- Every call needs ``Authorization: Bearer <token>`` (401 otherwise).
- ``GET /api/v1/{object}`` lists records ordered by (SystemModstamp, Id), filtered by
  ``updated_since`` (inclusive) and ``updated_until`` (exclusive), ``limit`` per page, and an opaque
  ``cursor`` for the next page (keyset pagination: stable while records are being added).
- A token bucket rate limit answers 429 with ``Retry-After`` when exceeded.
- Faults can be switched on for tests (5xx bursts, slow responses, 429 storms, truncated pages), in
  process through :class:`Faults` or over HTTP with ``POST /api/v1/_faults``.
- ``PATCH /api/v1/accounts/{id}`` writes the enterprise's fields back (reverse ETL), and
  ``PATCH /api/v1/accounts`` writes up to :data:`MAX_BATCH` accounts in one request, each with its own
  result (like Salesforce's sObject Collections with ``allOrNone=false``): one request against the rate
  limit instead of one per account.
- ``/api/v1/bulk/jobs`` exports a window of an object as files, asynchronously (source_systems/crm/bulk.py).
- ``/api/v1/bulk/ingest`` updates accounts from an uploaded file, asynchronously, with one result per record
  (source_systems/crm/bulk_update.py): a large change set in a handful of requests.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from source_systems.crm import store
from source_systems.crm.bulk import RECORDS_PER_FILE, add_bulk_routes
from source_systems.crm.bulk_update import add_update_routes

MAX_LIMIT = 2000
MAX_BATCH = 200


@dataclass
class Faults:
    """Misbehaviour to inject into the next requests (counts of requests affected)."""

    errors_5xx: int = 0
    rate_limited: int = 0
    retry_after: float = 1.0
    slow: int = 0
    slow_seconds: float = 2.0
    truncated: int = 0
    failed_jobs: int = 0  # bulk update jobs that fail while processing, having applied nothing
    stalled_jobs: int = 0  # bulk update jobs that stay InProgress, never applied
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        with self._lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


class TokenBucket:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate = rate_per_second
        self.capacity = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0 when allowed, else the seconds until a token is available."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


def _canonical(value: str, name: str) -> str:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HTTPException(400, detail=f"{name} must be an ISO 8601 timestamp, got {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _encode_cursor(stamp: str, record_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([stamp, record_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        stamp, record_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(stamp), str(record_id)
    except (ValueError, TypeError) as exc:
        raise HTTPException(400, detail="cursor is not one this API issued") from exc


def create_app(
    db_path: Path,
    token: str,
    faults: Faults | None = None,
    rate_per_second: float = 50.0,
    burst: int = 100,
    bulk_records_per_file: int = RECORDS_PER_FILE,
) -> FastAPI:
    app = FastAPI(title="Mock CRM", version="1.0")
    app.state.faults = faults or Faults()
    app.state.bucket = TokenBucket(rate_per_second, burst)
    local = threading.local()

    def db() -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = store.connect(db_path, readonly=True)
            local.conn = conn
        return conn

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Any) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {token}":
            return JSONResponse({"error": "invalid_token", "message": "missing or wrong bearer token"}, 401)
        f: Faults = app.state.faults
        if request.url.path.endswith("/_faults"):
            return await call_next(request)
        if f.take("rate_limited"):
            return JSONResponse({"error": "rate_limited"}, 429, headers={"Retry-After": f"{f.retry_after:g}"})
        wait = app.state.bucket.take()
        if wait > 0:
            return JSONResponse(
                {"error": "rate_limited", "message": "request rate exceeded"},
                429,
                headers={"Retry-After": f"{max(1, round(wait + 0.5))}"},
            )
        if f.take("errors_5xx"):
            return JSONResponse({"error": "unavailable"}, 503)
        if f.take("slow"):
            await asyncio.sleep(f.slow_seconds)
        response = await call_next(request)
        if f.take("truncated"):
            body = b"".join([chunk async for chunk in response.body_iterator])
            return Response(body[: max(1, len(body) // 2)], status_code=200, media_type="application/json")
        return response

    @app.get("/api/v1/{obj}")
    def list_records(
        obj: str,
        updated_since: str | None = None,
        updated_until: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 500,
    ) -> dict[str, Any]:
        if obj not in store.OBJECTS:
            raise HTTPException(404, detail=f"unknown object {obj!r}; objects: {sorted(store.OBJECTS)}")
        clauses, params = [], []
        if updated_since:
            clauses.append("SystemModstamp >= ?")
            params.append(_canonical(updated_since, "updated_since"))
        if updated_until:
            clauses.append("SystemModstamp < ?")
            params.append(_canonical(updated_until, "updated_until"))
        if cursor:
            stamp, last_id = _decode_cursor(cursor)
            clauses.append("(SystemModstamp > ? or (SystemModstamp = ? and Id > ?))")
            params += [stamp, stamp, last_id]
        where = f"where {' and '.join(clauses)}" if clauses else ""
        rows = (
            db()
            .execute(f"select * from {obj} {where} order by SystemModstamp, Id limit ?", (*params, limit + 1))
            .fetchall()
        )
        records = [dict(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = records[-1]
            next_cursor = _encode_cursor(last["SystemModstamp"], last["Id"])
        return {"object": obj, "records": records, "next_cursor": next_cursor}

    @app.patch("/api/v1/accounts/{account_id}")
    def patch_account(
        account_id: str, fields: dict[str, Any], idempotency_key: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        error = store.not_writable(fields)
        if error:
            raise HTTPException(422, detail=error)
        with store.connect(db_path) as conn:
            if not store.update_account(conn, account_id, fields):
                raise HTTPException(404, detail=f"account {account_id!r} not found")
        return {"id": account_id, "updated": sorted(fields)}

    @app.patch("/api/v1/accounts")
    def patch_accounts(body: dict[str, Any]) -> dict[str, Any]:
        """``{"records": [{"id": ..., "fields": {...}}, ...]}``: one transaction, one result per record
        (``updated``, ``not_found`` or ``invalid`` with its error), in the order sent."""
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise HTTPException(422, detail='expected {"records": [{"id": ..., "fields": {...}}, ...]}')
        if len(records) > MAX_BATCH:
            raise HTTPException(413, detail=f"{len(records)} records in one request; at most {MAX_BATCH}")
        with store.connect(db_path) as conn:
            results = store.write_accounts(conn, records)
        return {"results": results}

    @app.post("/api/v1/tasks")
    def create_task(body: dict[str, Any], idempotency_key: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """A task for the owner of ``AccountId`` (``Subject``, ``Description``, ``ActivityDate``). The
        ``Idempotency-Key`` header is required: the same key again returns the task it created first."""
        if not idempotency_key:
            raise HTTPException(422, detail="the Idempotency-Key header is required")
        account, subject = str(body.get("AccountId") or ""), str(body.get("Subject") or "")
        if not account or not subject:
            raise HTTPException(422, detail="AccountId and Subject are required")
        with store.connect(db_path) as conn:
            found = conn.execute("select Id from tasks where IdempotencyKey = ?", (idempotency_key,)).fetchone()
            if found is not None:
                return {"id": found[0], "created": False}
            if conn.execute("select 1 from accounts where Id = ?", (account,)).fetchone() is None:
                raise HTTPException(404, detail=f"account {account!r} not found")
            task_id = "00T" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:15]
            conn.execute(
                "insert into tasks (Id, AccountId, Subject, Description, ActivityDate, AssignedTo, IdempotencyKey, "
                "CreatedDate) values (?, ?, ?, ?, ?, 'account_owner', ?, ?)",
                (
                    task_id,
                    account,
                    subject,
                    body.get("Description"),
                    body.get("ActivityDate"),
                    idempotency_key,
                    dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                ),
            )
        return {"id": task_id, "created": True}

    add_bulk_routes(
        app, db_path, _canonical, bulk_records_per_file
    )  # POST /api/v1/bulk/jobs and friends (source_systems/crm/bulk.py)
    add_update_routes(app, db_path)  # POST /api/v1/bulk/ingest and friends (source_systems/crm/bulk_update.py)

    @app.post("/api/v1/_faults")
    def set_faults(settings: dict[str, float]) -> dict[str, Any]:
        f: Faults = app.state.faults
        for key, value in settings.items():
            if key.startswith("_") or not hasattr(f, key):
                raise HTTPException(422, detail=f"unknown fault {key!r}")
            setattr(f, key, type(getattr(f, key))(value))
        return {"faults": {k: v for k, v in vars(f).items() if not k.startswith("_")}}

    return app

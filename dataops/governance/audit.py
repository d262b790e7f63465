"""The audit log: one JSON line per request, whatever its outcome, appended under an exclusive lock, fsynced.

Append-only by construction (O_APPEND), one complete line per write under ``flock``: concurrent gateway
processes and concurrent HTTP requests neither lose nor interleave records. Each door builds one
:class:`Entry` per request and records it once, at the end, before anything is answered: a request whose
record cannot be written is not answered (the doors fail closed). A statement is kept up to
:data:`MAX_STATEMENT_CHARS` characters, with its length and SHA-256, so that no request can grow the log by
more than a few kilobytes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from dataops.core.settings import Settings

MAX_STATEMENT_CHARS = 2000
MAX_REASON_CHARS = 1000
MAX_LIST_ITEMS = 200


def audit_path(settings: Settings) -> Path:
    return settings.governance_dir / "audit.jsonl"


def _bounded(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


class Entry(dict[str, Any]):
    """One request's audit record, filled in as the request goes: who, door, what was asked, what ran,
    what it touched and what came of it."""

    def __init__(self, door: str, statement: str | None = None, **fields: Any) -> None:
        super().__init__(
            request_id=uuid.uuid4().hex[:16],
            door=door,
            user=None,
            role=None,
            allowed=False,
            outcome="error",
            reason="",
            brake=None,
            datasets=[],
            columns=[],
            rows=0,
            truncated=False,
            duration_ms=0,
        )
        self.statement(statement)
        self.update(fields)

    def statement(self, sql: str | None) -> None:
        self["statement"] = _bounded(sql, MAX_STATEMENT_CHARS)
        self["statement_chars"] = None if sql is None else len(sql)
        self["statement_sha256"] = None if sql is None else hashlib.sha256(sql.encode(errors="replace")).hexdigest()

    def refuse(self, outcome: str, reason: str, brake: str | None = None) -> None:
        self.update(allowed=False, outcome=outcome, reason=reason, brake=brake)


def _line(entry: dict[str, Any]) -> bytes:
    record = {"at": dt.datetime.now(dt.UTC).isoformat(), **entry}
    for key in ("reason", "executed"):
        if isinstance(record.get(key), str):
            record[key] = _bounded(record[key], MAX_REASON_CHARS if key == "reason" else MAX_STATEMENT_CHARS)
    for key in ("datasets", "columns"):
        if isinstance(record.get(key), list) and len(record[key]) > MAX_LIST_ITEMS:
            record[key] = [*record[key][:MAX_LIST_ITEMS], f"... {len(record[key]) - MAX_LIST_ITEMS} more"]
    return (json.dumps(record, default=str, sort_keys=True) + "\n").encode()


def record(settings: Settings, entry: dict[str, Any]) -> None:
    """Append one record; raises if it cannot (the caller must then not answer the request)."""
    path = audit_path(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = _line(entry)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read(settings: Settings) -> list[dict[str, Any]]:
    path = audit_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

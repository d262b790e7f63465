"""The audit log: one JSON line per query, appended under an exclusive lock, fsynced.

Append-only by construction (O_APPEND), one complete line per write under ``flock``: concurrent gateway
processes and concurrent HTTP requests neither lose nor interleave records.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from dataops.core.settings import Settings


def audit_path(settings: Settings) -> Path:
    return settings.data_dir / "governance" / "audit.jsonl"


def record(settings: Settings, entry: dict[str, Any]) -> None:
    path = audit_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), **entry}, default=str, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.write(fd, line.encode())
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

"""Pseudonyms for personal data: a keyed hash (HMAC-SHA256), stable across tables so joins still work,
useless without the key. The key lives in the data directory (``governance/pseudonym.key``, mode 0600) or
``DATAOPS_PSEUDONYM_KEY``; it never leaves the platform's files."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets

import duckdb
import pyarrow as pa
from duckdb.func import PythonUDFType

from dataops.settings import Settings


def pseudonym_key(settings: Settings) -> bytes:
    configured = os.environ.get("DATAOPS_PSEUDONYM_KEY")
    if configured:
        return configured.encode()
    path = settings.data_dir / "governance" / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def pseudonymise(key: bytes, value: str | None) -> str | None:
    if value is None:
        return None
    return "psd_" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:24]


def register_pseudonym(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """``pseudonym(varchar) -> varchar`` on the connection, vectorised over Arrow arrays."""
    key = pseudonym_key(settings)

    def function(values: pa.Array) -> pa.Array:
        return pa.array([pseudonymise(key, v) for v in values.to_pylist()], type=pa.string())

    with contextlib.suppress(duckdb.Error):
        conn.remove_function("pseudonym")
    conn.create_function("pseudonym", function, ["varchar"], "varchar", type=PythonUDFType.ARROW)

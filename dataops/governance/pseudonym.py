"""Pseudonyms for personal data: a keyed hash (HMAC-SHA256), stable across tables so joins still work,
useless without the key. The key lives in the data directory (``governance/pseudonym.key``, mode 0600) or
``DATAOPS_PSEUDONYM_KEY``; it never leaves the platform's files.

Publishing computes them in DuckDB (docs/decisions/0017): HMAC is two SHA-256 passes over the key's padded
blocks (RFC 2104), which DuckDB's ``sha256`` does column at a time, where a Python function called per value
took 2.1 s of every daily publish at 720 days of history. ``pseudonymise`` is the reference it must equal.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import duckdb

from dataops.core.settings import Settings

BLOCK = 64  # SHA-256's block size in bytes: HMAC pads (or first hashes) the key to it


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


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The inner and outer padded keys of HMAC-SHA256 (RFC 2104, section 2)."""
    block = (hashlib.sha256(key).digest() if len(key) > BLOCK else key).ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def register_pseudonym(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """``pseudonym(value) -> varchar`` on the connection (any value as its text), equal to :func:`pseudonymise`.

    The padded keys are session variables of this connection, passed as parameters: they appear in no SQL
    text, no macro definition and nothing the connection writes to a database file.
    """
    inner, outer = hmac_pads(pseudonym_key(settings))
    conn.execute("set variable dataops_pseudonym_inner = $1", [inner])
    conn.execute("set variable dataops_pseudonym_outer = $1", [outer])
    conn.execute(
        "create or replace temp macro pseudonym(value) as 'psd_' || left(sha256("
        "getvariable('dataops_pseudonym_outer') || unhex(sha256(getvariable('dataops_pseudonym_inner') "
        "|| encode(cast(value as varchar))))), 24)"
    )

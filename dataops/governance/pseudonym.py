"""Pseudonyms for personal data: a keyed hash (HMAC-SHA256), stable across tables so joins still work,
useless without the key.

The key lives outside the data directory (``Settings.pseudonym_key_file``: the platform account's config
folder, or ``DATAOPS_PSEUDONYM_KEY_FILE``), created mode 0600 on first use, so that no copy, backup or reader
of the data carries it. Rotating it (:func:`rotate_key`, ``dataops pseudonym rotate``) changes every pseudonym
at the next publish: pseudonyms published before no longer join with those published after
(docs/governance.md, docs/decisions/0025).

Publishing computes them in DuckDB (docs/decisions/0017): HMAC is two SHA-256 passes over the key's padded
blocks (RFC 2104), which DuckDB's ``sha256`` does column at a time, where a Python function called per value
took 2.1 s of every daily publish at 720 days of history. ``pseudonymise`` is the reference it must equal.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import duckdb

from dataops.core.settings import Settings

BLOCK = 64  # SHA-256's block size in bytes: HMAC pads (or first hashes) the key to it


def legacy_key_file(settings: Settings) -> Path:
    """Where earlier versions kept the key: inside the data directory."""
    return settings.governance_dir / "pseudonym.key"


def _write_key(path: Path, key: str, replace: bool) -> None:
    """Write a key file mode 0600 (its folder 0700); atomically, and never over an existing key unless
    ``replace``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if another process created the key first: theirs stands
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def pseudonym_key(settings: Settings) -> bytes:
    """The key, created on first use; a key earlier versions kept in the data directory is moved out (the
    same key: pseudonyms do not change)."""
    path = settings.pseudonym_key_file
    if not path.exists():
        legacy = legacy_key_file(settings)
        _write_key(path, legacy.read_text().rstrip("\r\n") if legacy.exists() else secrets.token_hex(32), replace=False)
        legacy.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by others; `chmod 600 {path}`, then rotate the key")
    return path.read_text().rstrip("\r\n").encode()


def key_id(key: bytes) -> str:
    """A name for a key that reveals nothing of it (for logs and the rotation's report)."""
    return hashlib.sha256(b"dataops pseudonym key id:" + key).hexdigest()[:12]


def rotate_key(settings: Settings) -> tuple[str | None, str]:
    """Replace the key with a new random one; returns the old and new key ids. The old key is not kept:
    keeping it would keep every old pseudonym reversible by whoever obtains it."""
    path = settings.pseudonym_key_file
    old = key_id(pseudonym_key(settings)) if path.exists() or legacy_key_file(settings).exists() else None
    new = secrets.token_hex(32)
    _write_key(path, new, replace=True)
    return old, key_id(new.encode())


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

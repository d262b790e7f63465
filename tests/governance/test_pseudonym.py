"""Pseudonyms computed in DuckDB are the keyed hash itself: equal to Python's HMAC-SHA256 for every key length
and any text, so a pseudonym published before the change still joins with one published after it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.governance.pseudonym import hmac_pads, pseudonymise, register_pseudonym

KEYS = ["k", "0123456789abcdef" * 4, "a much longer key than one SHA-256 block, which HMAC hashes first " * 2, "clé🔑"]
VALUES = ["ada@example.com", "", "zoë.müller@exämple.de", "x" * 300, None, "multi\nline\ttext"]


@pytest.mark.parametrize("key", KEYS, ids=["short", "one-block", "longer-than-a-block", "non-ascii"])
def test_the_warehouse_pseudonym_equals_the_hmac_reference(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAOPS_PSEUDONYM_KEY", key)
    with duckdb.connect() as conn:
        register_pseudonym(conn, Settings(tmp_path))
        conn.execute("create table people as select unnest($values) as email", {"values": VALUES})
        got = [v for (v,) in conn.execute("select pseudonym(email) from people order by rowid").fetchall()]
    assert got == [pseudonymise(key.encode(), v) for v in VALUES]


def test_a_value_that_is_not_text_is_pseudonymised_as_its_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_PSEUDONYM_KEY", "k")
    with duckdb.connect() as conn:
        register_pseudonym(conn, Settings(tmp_path))
        assert conn.execute("select pseudonym(4711)").fetchone() == (pseudonymise(b"k", "4711"),)


def test_neither_the_key_nor_its_pads_are_in_the_macro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "0123456789abcdef" * 4
    monkeypatch.setenv("DATAOPS_PSEUDONYM_KEY", key)
    with duckdb.connect() as conn:
        register_pseudonym(conn, Settings(tmp_path))
        (definition,) = conn.execute(
            "select macro_definition from duckdb_functions() where function_name = 'pseudonym'"
        ).fetchone()
    secrets = [
        key,
        *(pad.hex() for pad in hmac_pads(key.encode())),
        *(pad.hex().upper() for pad in hmac_pads(key.encode())),
    ]
    assert not [s for s in secrets if s in definition]
    assert "getvariable" in definition

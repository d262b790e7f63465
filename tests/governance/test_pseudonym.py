"""Pseudonyms computed in DuckDB are the keyed hash itself: equal to Python's HMAC-SHA256 for every key length
and any text, so a pseudonym published before the change still joins with one published after it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.governance.pseudonym import (
    hmac_pads,
    key_id,
    legacy_key_file,
    pseudonym_key,
    pseudonymise,
    register_pseudonym,
    rotate_key,
)


def use_key(monkeypatch: pytest.MonkeyPatch, folder: Path, key: str) -> None:
    path = folder / "pseudonym.key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    monkeypatch.setenv("DATAOPS_PSEUDONYM_KEY_FILE", str(path))


KEYS = ["k", "0123456789abcdef" * 4, "a much longer key than one SHA-256 block, which HMAC hashes first " * 2, "clé🔑"]
VALUES = ["ada@example.com", "", "zoë.müller@exämple.de", "x" * 300, None, "multi\nline\ttext"]


@pytest.mark.parametrize("key", KEYS, ids=["short", "one-block", "longer-than-a-block", "non-ascii"])
def test_the_warehouse_pseudonym_equals_the_hmac_reference(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_key(monkeypatch, tmp_path, key)
    with duckdb.connect() as conn:
        register_pseudonym(conn, Settings(tmp_path))
        conn.execute("create table people as select unnest($values) as email", {"values": VALUES})
        got = [v for (v,) in conn.execute("select pseudonym(email) from people order by rowid").fetchall()]
    assert got == [pseudonymise(key.encode(), v) for v in VALUES]


def test_a_value_that_is_not_text_is_pseudonymised_as_its_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, tmp_path, "k")
    with duckdb.connect() as conn:
        register_pseudonym(conn, Settings(tmp_path))
        assert conn.execute("select pseudonym(4711)").fetchone() == (pseudonymise(b"k", "4711"),)


def test_neither_the_key_nor_its_pads_are_in_the_macro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "0123456789abcdef" * 4
    use_key(monkeypatch, tmp_path, key)
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


def test_the_key_is_created_outside_the_data_directory_private_and_only_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "config" / "dataops" / "pseudonym.key"
    monkeypatch.setenv("DATAOPS_PSEUDONYM_KEY_FILE", str(key_file))
    settings = Settings(tmp_path / "data")
    first = pseudonym_key(settings)
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700
    assert len(first) == 64 and pseudonym_key(settings) == first
    assert not (tmp_path / "data").exists()  # nothing of it in the data directory


def test_a_key_kept_in_the_data_directory_by_earlier_versions_moves_out_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(tmp_path / "data")
    legacy = legacy_key_file(settings)
    legacy.parent.mkdir(parents=True)
    legacy.write_text("an old key\n")
    monkeypatch.setenv("DATAOPS_PSEUDONYM_KEY_FILE", str(tmp_path / "outside" / "pseudonym.key"))
    assert pseudonym_key(settings) == b"an old key"  # pseudonyms published before still join
    assert not legacy.exists() and (tmp_path / "outside" / "pseudonym.key").stat().st_mode & 0o777 == 0o600


def test_a_key_readable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, tmp_path, "k")
    (tmp_path / "pseudonym.key").chmod(0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        pseudonym_key(Settings(tmp_path / "data"))


def test_rotating_the_key_changes_every_pseudonym(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, tmp_path, "the first key")
    settings = Settings(tmp_path / "data")
    before = pseudonymise(pseudonym_key(settings), "ada@example.com")
    old, new = rotate_key(settings)
    after = pseudonymise(pseudonym_key(settings), "ada@example.com")
    assert old == key_id(b"the first key") and new != old and after != before
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    assert b"the first key" not in (tmp_path / "pseudonym.key").read_bytes()  # the old key is gone

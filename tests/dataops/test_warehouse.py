"""Connections to the build warehouse: a step that holds it open makes its units of work join one database."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dataops.core.warehouse import connect, held_open, scalar


def test_units_of_work_inside_held_open_join_the_open_database_and_checkpoint_once(tmp_path: Path) -> None:
    db = tmp_path / "build.duckdb"
    wal = db.with_name("build.duckdb.wal")
    with connect(db) as conn:
        conn.execute("create table raw_rows (n integer)")
    assert not wal.exists()  # closing the last connection checkpoints the file
    with held_open(db) as held:
        for n in range(3):
            with connect(db) as unit:
                unit.execute("insert into raw_rows values (?)", [n])
            assert wal.exists()  # ... but not while the step holds it: no checkpoint per unit of work
        assert scalar(held, "select count(*) from raw_rows") == 3  # the holder reads what the units committed
        with pytest.raises(duckdb.ConnectionException, match="different configuration"), connect(db, read_only=True):
            pass
    assert not wal.exists()
    with connect(db, read_only=True) as reader:
        assert scalar(reader, "select sum(n) from raw_rows") == 3

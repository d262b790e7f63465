"""Connections to the DuckDB build warehouse, with the platform's resource limits applied.

The pipeline is the only writer of the build warehouse; a connection is opened per unit of work and
closed at its end, so that dbt (a separate process) can take the file in turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:  # DuckDB makes the frame: importing polars here would cost every reader (`dataops status`)
    import polars as pl


@dataclass(frozen=True)
class Limits:
    memory_limit: str = "2GB"
    threads: int = 2


@contextmanager
def connect(path: Path, read_only: bool = False, limits: Limits | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    limits = limits or Limits()
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(
        str(path), read_only=read_only, config={"memory_limit": limits.memory_limit, "threads": limits.threads}
    )
    try:
        conn.execute("set TimeZone = 'UTC'")
        yield conn
    finally:
        conn.close()


@contextmanager
def held_open(path: Path, limits: Limits | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The build warehouse kept open for a step that does many units of work in turn.

    DuckDB keeps one database per file and process while a connection to it is open, so each
    ``connect(path, limits=limits)`` inside the block joins it instead of opening the file and checkpointing
    it on close, which grows with history (docs/performance.md). Every unit of work still has its own
    connection and transaction; the file is released when the block ends, before the next step. A
    read-only ``connect`` of the same file cannot join: read through the connection this yields.
    """
    with connect(path, limits=limits) as conn:
        yield conn


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One explicit transaction: everything in the block lands together or not at all."""
    conn.execute("begin transaction")
    try:
        yield conn
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")


def query_frame(conn: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> pl.DataFrame:
    """Run a query and return its result as a polars frame."""
    return conn.sql(sql, params=params or None).pl()


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: list[object] | dict[str, object] | None = None) -> Any:
    """The single value a query returns (its result fully consumed, as DuckDB requires before the next one)."""
    rows = conn.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    sql = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    return bool(scalar(conn, sql, [schema, table]))


def table_row_counts(conn: duckdb.DuckDBPyConnection, relations: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Rows of each relation that is a table (a view's count would run its query, so views are left out)."""
    wanted = set(relations)
    tables = conn.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'"
    ).fetchall()
    counts: dict[tuple[str, str], int] = {}
    for schema, name in tables:
        if (schema, name) in wanted:
            counts[(schema, name)] = int(conn.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0])  # type: ignore[index]
    return counts

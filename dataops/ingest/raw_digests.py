"""Each raw table's digest, kept by the loads that write it (docs/decisions/0075).

A build's inputs hold each raw table's row count and sum of row hashes (decision 0020), read by a scan of the
whole table: at SF 10 and 720 days that is most of the dbt step's CPU outside dbt, and it grows with history.
The digest is a sum, so a load that replaces a window keeps it in the same transaction as its rows, hashing
only the rows it deletes and inserts: ``pipeline.raw_digests`` holds, per table, the columns and types it
covers, the DuckDB version whose ``hash`` it sums, the rows and the sum.

A build trusts a kept digest only while its columns and version are those of the table now and its row count
is the table's (a count reads no column): a writer that did not keep it, an older warehouse, a column added
or renamed, a DuckDB upgrade. Otherwise the build scans the table, as before, and keeps what it found. A
writer that changes rows in place, keeping their count, must keep the digest or forget it: no writer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from dataops.core.digest import columns_key, row_hash, table_digest
from dataops.core.warehouse import table_exists, transaction
from dataops.ingest.lake import PER_EXTRACTION

RAW_DIGESTS_DDL = """
create schema if not exists pipeline;
create table if not exists pipeline.raw_digests (
    table_name varchar primary key, columns varchar not null, engine varchar not null, rows bigint not null,
    hash_sum hugeint not null)
"""

Columns = list[tuple[str, str]]


@dataclass(frozen=True)
class Kept:
    columns: str
    engine: str
    rows: int
    hash_sum: str | None  # as ``table_digest`` gives it: None for no rows


def unread_columns() -> dict[str, set[str]]:
    """Each raw table's columns no model reads: the lineage a re-extraction changes and the CRM write-back's."""
    from quality.contracts import CONTRACTS  # pandera: loaded already wherever a build or load runs

    return {f"{c.system}__{c.table}": {*PER_EXTRACTION, *c.written_back} for c in CONTRACTS.values()}


def read_columns(conn: duckdb.DuckDBPyConnection, table: str | None = None) -> dict[str, Columns]:
    """The raw tables' columns (of ``table`` alone, when given) a build's digest covers, names and types in
    the table's order: a row's hash ignores names, and two types' values may hash alike."""
    unread = unread_columns()
    columns: dict[str, Columns] = {}
    for name, column, data_type in conn.execute(  # information_schema.columns' rows, read at a third of its cost
        "select table_name, column_name, data_type from duckdb_columns() where schema_name = 'raw' "
        "and (? is null or table_name = ?) order by table_name, column_index",
        [table, table],
    ).fetchall():
        if column not in unread.get(name, PER_EXTRACTION):
            columns.setdefault(str(name), []).append((str(column), str(data_type)))
    return columns


def _engine() -> str:
    return duckdb.__version__


def _rows_digest(columns: Columns, rows: str) -> str:
    """A select of the count and hash sum (0 for none) of ``rows``, a table or a select read as ``source``."""
    names = [name for name, _ in columns]
    return f"select count(*) as n, coalesce(sum({row_hash(names)}::hugeint), 0) as s from {rows} as source"


def _change(conn: duckdb.DuckDBPyConnection, table: str, rows: str, sign: str, params: Sequence[object] = ()) -> None:
    """Add (``sign`` +) or subtract (-) the digest of ``rows`` to the table's kept one, if it covers the
    table's columns now: a kept digest of other columns is left for the next build to scan."""
    columns = read_columns(conn, table).get(table)
    if not columns or not _kept_anywhere(conn):
        return
    conn.execute(
        f"update pipeline.raw_digests as kept set rows = kept.rows {sign} d.n, hash_sum = kept.hash_sum {sign} d.s "
        f"from ({_rows_digest(columns, rows)}) as d where kept.table_name = ? and kept.columns = ? "
        "and kept.engine = ?",
        [*params, table, columns_key(columns), _engine()],
    )


def _kept_anywhere(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse keeps raw digests at all (``table_exists``, at a third of its cost: two calls a
    load)."""
    sql = "select count(*) from duckdb_tables() where schema_name = 'pipeline' and table_name = 'raw_digests'"
    return bool(conn.execute(sql).fetchone()[0])  # type: ignore[index]


def delete_kept(conn: duckdb.DuckDBPyConnection, table: str, where: str, params: Sequence[object] = ()) -> None:
    """Delete the rows of ``raw.table`` ``where`` holds, their hashes subtracted from its kept digest (in the
    caller's transaction, as every function here that writes)."""
    _change(conn, table, f"(select * from raw.{table} where {where})", "-", params)
    conn.execute(f"delete from raw.{table} where {where}", list(params))


def insert_kept(conn: duckdb.DuckDBPyConnection, table: str, rows: str) -> None:
    """Insert ``rows`` (a table, view or registered frame, by name) into ``raw.table``, their hashes added to
    its kept digest. They are cast to the table's types first, in a table of its shape, so that the hashes
    added are those of the values the table then holds."""
    conn.execute(f"create or replace temp table _kept_rows as from raw.{table} limit 0")
    conn.execute(f"insert into _kept_rows by name select * from {rows}")
    insert_typed(conn, table, "_kept_rows")
    conn.execute("drop table _kept_rows")


def insert_typed(conn: duckdb.DuckDBPyConnection, table: str, rows: str) -> None:
    """Insert a table of ``raw.table``'s very columns and types (a load's staged rows), their hashes added to
    its kept digest."""
    _change(conn, table, rows, "+")
    conn.execute(f"insert into raw.{table} by name from {rows}")


def seed_empty(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """A table just created: its digest is kept from its first row on."""
    conn.execute(RAW_DIGESTS_DDL)
    _seed(conn, table, read_columns(conn, table).get(table, []), (0, None))


def forget(conn: duckdb.DuckDBPyConnection, table: str | None = None) -> None:
    """Forget the table's kept digest (every one, without ``table``): the next build scans it."""
    if table_exists(conn, "pipeline", "raw_digests"):
        conn.execute("delete from pipeline.raw_digests where ? is null or table_name = ?", [table, table])


def _seed(conn: duckdb.DuckDBPyConnection, table: str, columns: Columns, found: tuple[int, str | None]) -> None:
    """Keep ``found`` as the table's digest. An upsert, not a delete and an insert: DuckDB lets a transaction
    delete a row another one updated since it began, but not update it (a load's change is not lost)."""
    conn.execute(
        "insert into pipeline.raw_digests values (?, ?, ?, ?, coalesce(?::hugeint, 0)) on conflict (table_name) "
        "do update set columns = excluded.columns, engine = excluded.engine, rows = excluded.rows, "
        "hash_sum = excluded.hash_sum",
        [table, columns_key(columns), _engine(), found[0], found[1]],
    )


def kept_digests(conn: duckdb.DuckDBPyConnection) -> dict[str, Kept]:
    if not table_exists(conn, "pipeline", "raw_digests"):
        return {}
    found = conn.execute(
        "select table_name, columns, engine, rows, case when rows > 0 then hash_sum::varchar end "
        "from pipeline.raw_digests"
    ).fetchall()
    return {str(t): Kept(str(c), str(e), int(n), None if s is None else str(s)) for t, c, e, n, s in found}


def raw_digests(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[Columns, tuple[int, str | None]]]:
    """Each raw table's columns, and its row count and sum of row hashes over them: kept, or scanned (and then
    kept) where no kept digest matches the table. Equal to a scan of every table, whichever it reads."""
    columns = read_columns(conn)
    kept = kept_digests(conn)
    counts = _counts(conn, list(columns))
    found: dict[str, tuple[Columns, tuple[int, str | None]]] = {}
    for table, read in columns.items():
        entry = kept.get(table)
        valid_for = (columns_key(read), _engine(), counts[table])
        if entry is not None and (entry.columns, entry.engine, entry.rows) == valid_for:
            found[table] = (read, (entry.rows, entry.hash_sum))
        else:
            found[table] = (read, _scan_and_keep(conn, table, read))
    return found


def _counts(conn: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, int]:
    """Each table's row count, in one query (no column is read)."""
    if not tables:
        return {}
    union = " union all ".join(f"select '{table}', count(*) from raw.\"{table}\"" for table in tables)
    return {str(table): int(n) for table, n in conn.execute(union).fetchall()}


def _scan_and_keep(conn: duckdb.DuckDBPyConnection, table: str, columns: Columns) -> tuple[int, str | None]:
    """The table's digest by a scan, kept for the next build: the scan and the kept digest in one transaction,
    so that a load committed meanwhile is in neither. A load that changed the kept digest meanwhile wins (the
    conflict rolls this back): the table is scanned again, as it is now, and the next build keeps it."""
    try:
        with transaction(conn):
            found = table_digest(conn, "raw", table, [name for name, _ in columns])
            conn.execute(RAW_DIGESTS_DDL)
            _seed(conn, table, columns, found)
    except duckdb.TransactionException:
        return table_digest(conn, "raw", table, [name for name, _ in columns])
    return found

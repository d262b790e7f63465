"""Digests of what a step is made from, so that a re-run can tell it would write the same thing again
(docs/decisions/0020 for dbt, 0021 for publishing and egress)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.warehouse import table_exists


def digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def files_digest(paths: Iterable[Path], root: Path | None = None) -> str:
    """The files' names (relative to ``root``) and bytes: a moved file is a change too."""
    found = hashlib.sha256()
    for path in paths:
        name = str(path.relative_to(root)) if root is not None else path.name
        found.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return found.hexdigest()


def table_digest(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, columns: Sequence[str] | None = None
) -> tuple[int, str | None]:
    """The table's row count and the sum of its rows' hashes (of ``columns`` only, when given).

    A sum, not an XOR, so two copies of a row do not cancel out. A table that does not exist yet counts as
    empty: it is created on first use (the archive log by the first publish), which changes nothing read.
    """
    if not table_exists(conn, schema, table):
        return (0, None)
    sql = f"select count(*), sum({row_hash(columns)})::varchar from {schema}.{table} as source"
    found = conn.execute(sql).fetchone()
    assert found is not None
    return (int(found[0]), found[1])


def row_hash(columns: Sequence[str] | None, alias: str = "source") -> str:
    """A row's hash of ``columns`` (the whole row without), rows read as ``alias``: what :func:`table_digest`
    and :func:`month_digests` sum, and the raw tables' kept digests (dataops/ingest/raw_digests.py)."""
    quoted = [f'"{column}"' for column in columns or ()]
    return f"hash(row({', '.join(quoted)}))" if quoted else f"hash({alias})"


# Months of a date column, so that a table of years is compared (publish) or exported (data products) by the
# months that changed (docs/decisions/0071).
def month_of(column: str) -> str:
    """A row's month as ``yyyymm``, 0 for rows without one (a null or infinite date)."""
    return f"coalesce(year({column}) * 100 + month({column}), 0)"


def first_date_column(columns: Sequence[tuple[str, str]]) -> str | None:
    """The first DATE column of ``columns`` (name, type): the column a table of years is split into months by.
    None: a table without one, compared or exported whole."""
    return next((name for name, kind in columns if kind == "DATE"), None)


def qualified(alias: str, column: str) -> str:
    """``alias."column"``, the column's quotes doubled."""
    return f'{alias}."{column.replace(chr(34), chr(34) * 2)}"'


def month_digests(
    conn: duckdb.DuckDBPyConnection,
    rows: str,
    column: str,
    alias: str,
    params: dict[str, object] | None = None,
) -> dict[int, tuple[int, int]]:
    """Each month's row count and sum of row hashes, as :func:`table_digest` tells tables apart; ``rows`` is a
    table or a parenthesised select, read as ``alias`` (``column`` is qualified by it)."""
    found = conn.execute(
        f"select {month_of(column)}, count(*), sum({row_hash(None, alias)}::hugeint) from {rows} as {alias} group by 1",
        params,
    ).fetchall()
    return {int(month): (int(n), int(total)) for month, n, total in found}


def month_name(month: int) -> str:
    return f"{month // 100}-{month % 100:02d}" if month else "none"


def in_months(column: str, months: list[int]) -> str:
    """Rows of the given months, as ranges of the date column, so that a scan skips the row groups of others."""
    ranges = []
    for month in sorted(months):
        if not month:
            ranges.append(f"({column} is null or not isfinite({column}))")
            continue
        year, number = divmod(month, 100)
        start, end = dt.date(year, number, 1), dt.date(year + number // 12, number % 12 + 1, 1)
        ranges.append(f"({column} >= date '{start}' and {column} < date '{end}')")
    return f"({' or '.join(ranges)})" if ranges else "false"


# The digests of a published file's tables, kept in the file itself by the publish that wrote it, so that the
# next publish and the data products hash only the side they read rows from (docs/decisions/0078).
KEPT_SCHEMA, KEPT_TABLE = "pipeline", "month_digests"
WHOLE = -1  # the one "month" of a table without a date column: its digest is the table's
Digests = dict[int, tuple[int, int]]  # month (``month_of``, or WHOLE) -> (rows, sum of row hashes); no empty month


def digests(
    conn: duckdb.DuckDBPyConnection,
    rows: str,
    column: str | None,
    alias: str,
    params: dict[str, object] | None = None,
) -> Digests:
    """:func:`month_digests` of ``rows``, or with no date ``column`` the whole rows' as month :data:`WHOLE`."""
    if column is not None:
        return month_digests(conn, rows, column, alias, params)
    found = conn.execute(
        f"select count(*), sum({row_hash(None, alias)}::hugeint) from {rows} as {alias}", params
    ).fetchone()
    return {WHOLE: (int(found[0]), int(found[1]))} if found and found[0] else {}


@dataclass(frozen=True)
class KeptMonths:
    """One table's digests as a publish kept them, with what they are valid for: the table's columns (names,
    types, order) and the DuckDB version whose ``hash`` they sum."""

    columns: str
    engine: str
    months: Digests


def columns_key(columns: Sequence[tuple[str, str]]) -> str:
    """A table's columns (name, type, in order) as the text kept beside its digests: the kept raw digests
    (dataops/ingest/raw_digests.py) and a published file's month digests are valid only for these columns."""
    return json.dumps([list(column) for column in columns])


def read_kept(conn: duckdb.DuckDBPyConnection, database: str) -> dict[str, KeptMonths]:
    """The digests the attached ``database`` keeps of its tables (none: a file written before they were kept,
    or one whose kept digests cannot be read, whose tables are then hashed as before)."""
    exists = conn.execute(
        "select count(*) from duckdb_tables() where database_name = ? and schema_name = ? and table_name = ?",
        [database, KEPT_SCHEMA, KEPT_TABLE],
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    try:
        found = conn.execute(
            f"select dataset, columns, engine, months from {database}.{KEPT_SCHEMA}.{KEPT_TABLE}"
        ).fetchall()
        return {
            str(name): KeptMonths(
                str(columns), str(engine), {int(m): (int(n), int(s)) for m, n, s in json.loads(months)}
            )
            for name, columns, engine, months in found
        }
    except (duckdb.Error, ValueError, TypeError):
        return {}


def trusted(
    conn: duckdb.DuckDBPyConnection,
    kept: dict[str, KeptMonths],
    name: str,
    table: str,
    columns: Sequence[tuple[str, str]],
) -> Digests | None:
    """The kept digests of ``name`` (read as ``table``) if they can stand for hashing it: kept under its columns
    now and this DuckDB version, and their rows are the table's row count (a count reads no column). None: the
    table is to be hashed."""
    entry = kept.get(name)
    if entry is None or (entry.columns, entry.engine) != (columns_key(columns), duckdb.__version__):
        return None
    rows = conn.execute(f"select count(*) from {table}").fetchone()
    return entry.months if rows and int(rows[0]) == sum(n for n, _ in entry.months.values()) else None


def write_kept(
    conn: duckdb.DuckDBPyConnection, database: str, found: Mapping[str, tuple[Sequence[tuple[str, str]], Digests]]
) -> None:
    """Keep ``found`` (dataset -> its columns and digests) in the attached ``database``, written in the same
    file, so they are swapped in with the tables they describe or not at all."""
    conn.execute(f"create schema if not exists {database}.{KEPT_SCHEMA}")
    conn.execute(
        f"create or replace table {database}.{KEPT_SCHEMA}.{KEPT_TABLE} "
        "(dataset varchar, columns varchar, engine varchar, months varchar)"
    )
    rows = [
        (name, columns_key(columns), duckdb.__version__, json.dumps(sorted([m, n, s] for m, (n, s) in months.items())))
        for name, (columns, months) in sorted(found.items())
    ]
    if rows:
        conn.executemany(f"insert into {database}.{KEPT_SCHEMA}.{KEPT_TABLE} values (?, ?, ?, ?)", rows)

"""Digests of what a step is made from, so that a re-run can tell it would write the same thing again
(docs/decisions/0020 for dbt, 0021 for publishing and egress)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
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

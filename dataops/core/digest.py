"""Digests of what a step is made from, so that a re-run can tell it would write the same thing again
(docs/decisions/0020 for dbt, 0021 for publishing and egress)."""

from __future__ import annotations

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
    quoted = [f'"{column}"' for column in columns or ()]
    row = f"row({', '.join(quoted)})" if quoted else "source"
    found = conn.execute(f"select count(*), sum(hash({row}))::varchar from {schema}.{table} as source").fetchone()
    assert found is not None
    return (int(found[0]), found[1])

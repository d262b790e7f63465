"""What a published file keeps of its tables' digests, beside a fresh computation of them (decision 0078)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from dataops.core.digest import Digests, KeptMonths, columns_key, digests, first_date_column, qualified, read_kept

ROW = "_fresh_row"


def kept_and_fresh(path: Path) -> tuple[dict[str, KeptMonths], dict[str, KeptMonths]]:
    """The digests ``path`` keeps, and those of its published tables computed now (the same form)."""
    with duckdb.connect() as conn:
        conn.execute(f"attach '{path}' as held (read_only)")
        kept = read_kept(conn, "held")
        names = conn.execute(
            "select schema_name || '.' || table_name from duckdb_tables() where database_name = 'held' "
            "and schema_name in ('marts', 'kpis', 'reference') order by 1"
        ).fetchall()
        fresh = {}
        for (name,) in names:
            columns = [
                (str(c), str(t))
                for c, t in conn.execute(f"select column_name, column_type from (describe held.{name})").fetchall()
            ]
            date = first_date_column(columns)
            found: Digests = digests(conn, f"held.{name}", None if date is None else qualified(ROW, date), ROW)
            fresh[str(name)] = KeptMonths(columns_key(columns), duckdb.__version__, found)
    return kept, fresh


def tamper(path: Path, sql: list[str]) -> None:
    """Change the published file behind the publish's back (it is read-only to everyone)."""
    path.chmod(0o600)
    with duckdb.connect(str(path)) as conn:
        for statement in sql:
            conn.execute(statement)
    path.chmod(0o444)

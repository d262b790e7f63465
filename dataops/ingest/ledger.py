"""What the raw layer has loaded, and what the models have not yet been built from (docs/decisions/0035).

Landing and loading run apart: the landing run of a business date or range writes the lake; the build run
that follows loads every landed version not yet loaded, whoever launched either run (the CLI, the schedule
and its sensor, a backfill from the UI). Tables in the build warehouse, each written in the same transaction
as the rows it describes (``matched_versions`` describes none, and is written by itself):

- ``pipeline.loaded_versions``: each landed version (``lake.Version.name``) the raw layer has loaded: read, or
  shadowed by a newer version read, or holding on its other days what raw holds (settled, decision 0103);
- ``pipeline.matched_versions``: each landed version a build found holding, for every day it covers, the records
  the raw layer holds (``lake.day_changes``), so it loaded nothing of it (docs/decisions/0103). Judged once a
  build has run: a landing that brought nothing new is not read again by every later build and no-data check;
- ``pipeline.raw_loads``: each window a load replaced, until a complete dbt build covers it (``built_at``);
- ``pipeline.released_rows``: each quarantined orphan a load released into raw (its partition and record
  hash), until a complete dbt build covers it. A released row keeps its own, older partition, outside the
  window of the load that released it: the staging models that recompute only the records a window loaded
  (docs/decisions/0065) read this table to recompute those records too;
- ``pipeline.restaged_leads``: the leads the lead staging models held from a build's window before they
  replaced them (written by their dbt pre-hook, ``transforms/macros/incremental_entities.sql``): a re-run that
  dropped a lead's newer version stages it again from an older partition, outside the window, and the models
  keyed by the lead read this table to recompute it too (docs/decisions/0067). A complete build that started
  after a note deletes it.

The build's window is the span of the loads not yet built: a daily run's day, a backfill's range, and
every earlier window whose build failed or did not happen (a landing run left alone, a build of a subset).
"""

from __future__ import annotations

import datetime as dt

import duckdb

from dataops.core.warehouse import table_exists

LEDGER_DDL = """
create schema if not exists pipeline;
create table if not exists pipeline.loaded_versions (
    system varchar not null, table_name varchar not null, version varchar not null,
    window_start date not null, window_end date not null, run_id varchar, loaded_at timestamptz not null);
create table if not exists pipeline.matched_versions (
    system varchar not null, table_name varchar not null, version varchar not null, matched_at timestamptz not null);
create table if not exists pipeline.raw_loads (
    system varchar not null, table_name varchar not null, window_start date not null, window_end date not null,
    run_id varchar, loaded_at timestamptz not null, built_at timestamptz);
create table if not exists pipeline.released_rows (
    system varchar not null, table_name varchar not null, partition date not null, record_hash varchar not null,
    loaded_at timestamptz not null, built_at timestamptz);
create table if not exists pipeline.restaged_leads (lead_id varchar not null, noted_at timestamptz not null);
"""

Window = tuple[dt.date, dt.date]


def ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(LEDGER_DDL)


def loaded_versions(conn: duckdb.DuckDBPyConnection, system: str, table: str) -> set[str]:
    if not table_exists(conn, "pipeline", "loaded_versions"):
        return set()
    rows = conn.execute(
        "select version from pipeline.loaded_versions where system = ? and table_name = ?", [system, table]
    ).fetchall()
    return {str(version) for (version,) in rows}


def accounted(
    conn: duckdb.DuckDBPyConnection, system: str | None = None, table: str | None = None
) -> dict[str, set[str]]:
    """The versions the raw layer has loaded or found it holds already (neither waits for a load), by table
    (``system.table``): of every table, or of one."""
    found: dict[str, set[str]] = {}
    for ledger in ("loaded_versions", "matched_versions"):
        if table_exists(conn, "pipeline", ledger):
            rows = conn.execute(
                f"select system, table_name, version from pipeline.{ledger} "
                "where (? is null or system = ?) and (? is null or table_name = ?)",
                [system, system, table, table],
            ).fetchall()
            for row_system, row_table, version in rows:
                found.setdefault(f"{row_system}.{row_table}", set()).add(str(version))
    return found


def record_matched(conn: duckdb.DuckDBPyConnection, system: str, table: str, names: list[str]) -> None:
    """Versions found holding the records the raw layer holds of every day they cover: no load waits for them."""
    ensure_ledger(conn)
    now = dt.datetime.now(dt.UTC)
    conn.executemany(
        "insert into pipeline.matched_versions values (?, ?, ?, ?)", [[system, table, name, now] for name in names]
    )


def forget_judged(
    conn: duckdb.DuckDBPyConnection, system: str, table: str, names: list[str], since: dt.datetime
) -> None:
    """Forget that versions were loaded or matched since ``since``: they were judged without a day that is back
    in the lake now (an archived day restored), so the next build judges them again, that day included."""
    for ledger, stamp in (("loaded_versions", "loaded_at"), ("matched_versions", "matched_at")):
        if table_exists(conn, "pipeline", ledger) and names:
            conn.execute(
                f"delete from pipeline.{ledger} where system = ? and table_name = ? and {stamp} >= ? "
                "and list_contains(?, version)",
                [system, table, since, names],
            )


def record_load(
    conn: duckdb.DuckDBPyConnection,
    system: str,
    table: str,
    window: Window,
    versions: list[tuple[str, dt.date, dt.date]],
    run_id: str | None,
) -> None:
    """Within the load's transaction: the window it replaced, and the versions it has now loaded."""
    ensure_ledger(conn)
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        "insert into pipeline.raw_loads values (?, ?, ?, ?, ?, ?, null)", [system, table, *window, run_id, now]
    )
    for name, start, end in versions:
        conn.execute(
            "insert into pipeline.loaded_versions values (?, ?, ?, ?, ?, ?, ?)",
            [system, table, name, start, end, run_id, now],
        )


def record_release(conn: duckdb.DuckDBPyConnection, system: str, table: str, frame: str) -> None:
    """Within the load's transaction: the rows of a registered ``frame`` (``_partition``, ``_record_hash``)
    just released from quarantine into raw."""
    ensure_ledger(conn)
    conn.execute(
        f"insert into pipeline.released_rows select ?, ?, _partition, _record_hash, ?, null from {frame}",
        [system, table, dt.datetime.now(dt.UTC)],
    )


def unbuilt_window(conn: duckdb.DuckDBPyConnection) -> Window | None:
    """The span of every load no complete build has covered yet, or None when there is none."""
    if not table_exists(conn, "pipeline", "raw_loads"):
        return None
    rows = conn.execute(
        "select min(window_start), max(window_end) from pipeline.raw_loads where built_at is null"
    ).fetchall()
    return (rows[0][0], rows[0][1]) if rows and rows[0][0] is not None else None


def unbuilt_days(conn: duckdb.DuckDBPyConnection, system: str, table: str) -> set[dt.date]:
    """Every day of the table's loads no complete build has covered yet (a run's own load among them)."""
    if not table_exists(conn, "pipeline", "raw_loads"):
        return set()
    rows = conn.execute(
        "select distinct unnest(generate_series(window_start, window_end, interval 1 day))::date from "
        "pipeline.raw_loads where built_at is null and system = ? and table_name = ?",
        [system, table],
    ).fetchall()
    return {row[0] for row in rows}


def mark_built(conn: duckdb.DuckDBPyConnection, through: dt.datetime) -> None:
    """A complete build has covered every load made before ``through`` (call it in the stamp's transaction),
    and every lead noted before it: a note made during the build stays for the next one, in case the build
    that noted it stopped before the models reading it."""
    for table in ("raw_loads", "released_rows"):
        if table_exists(conn, "pipeline", table):
            update = f"update pipeline.{table} set built_at = ? where built_at is null and loaded_at <= ?"
            conn.execute(update, [through, through])
    if table_exists(conn, "pipeline", "restaged_leads"):
        conn.execute("delete from pipeline.restaged_leads where noted_at <= ?", [through])

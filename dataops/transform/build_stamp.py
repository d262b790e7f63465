"""A build's inputs, and the build the warehouse holds (docs/decisions/0020).

A re-run of a window whose raw rows, project, registry and archive log are all unchanged since the last
complete build of that window would rebuild the same tables: the dbt step reports them unchanged instead.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.digest import digest, files_digest, table_digest
from dataops.core.settings import DBT_PROJECT_DIR
from dataops.core.warehouse import table_exists, transaction
from dataops.ingest.ledger import mark_built, unbuilt_window
from dataops.ingest.raw_digests import raw_digests
from dataops.transform.project import project_files, registry_seeds, registry_vars
from registry.loader import Registry

BUILD_STAMP_DDL = """
create schema if not exists pipeline;
create table if not exists pipeline.dbt_build (
    inputs varchar not null,
    window_start varchar,
    window_end varchar,
    run_id varchar not null,
    built_at timestamptz not null
)
"""


def build_inputs(
    conn: duckdb.DuckDBPyConnection,
    window: tuple[str, str],
    dbt_vars: str,
    project_dir: Path = DBT_PROJECT_DIR,
    lake: Sequence[str] = (),
) -> str:
    """A digest of everything a dbt build of ``window`` reads.

    The product's events are read from the lake, not the warehouse (macros/product_lake.sql): the newest
    file of each of their folders under ``lake_dir`` (the event stream's own sensor lands them between
    builds) is part of it by name, unique per landed version.

    Raw rows are summed by content without the lineage that changes with every extraction of the same
    records (``PER_EXTRACTION``) and without the columns the CRM write-back sets (a contract's
    ``written_back``): the models read neither, so a re-run that re-extracts an unchanged day leaves the
    digest as it was (tests/transforms/test_dbt_project.py keeps the models off those columns). Each table's
    count and sum is the one its loads kept, where it matches the table, instead of a scan of its whole
    history (dataops/ingest/raw_digests.py, docs/decisions/0075).
    """
    parts: dict[str, Any] = {f"raw.{table}": [read, found] for table, (read, found) in raw_digests(conn).items()}
    parts |= {
        "archive_log": table_digest(conn, "governance", "archive_log"),  # archiving deletes rows from marts
        "lake": sorted(lake),
        "project": files_digest(project_files(project_dir), root=project_dir),
        "vars": dbt_vars,
        "window": list(window),
        "versions": [importlib.metadata.version(p) for p in ("dbt-core", "dbt-duckdb", "duckdb")],
    }
    return digest(parts)


def registry_build_inputs(
    conn: duckdb.DuckDBPyConnection,
    window: tuple[str, str],
    registry: Registry,
    project_dir: Path = DBT_PROJECT_DIR,
    lake: Sequence[str] = (),
) -> str:
    """The build inputs as a build under ``registry`` reads them: its seeds in the project folder while the
    digest reads the project, not those another process under another version (a definition proposal) wrote
    there meanwhile, which made an unchanged re-run rebuild."""
    with registry_seeds(registry, project_dir):
        return build_inputs(conn, window, registry_vars(registry), project_dir, lake)


def built_from(conn: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """The inputs digest and run of the last complete build, if the warehouse holds one."""
    if not table_exists(conn, "pipeline", "dbt_build"):
        return None
    row = conn.execute("select inputs, run_id from pipeline.dbt_build").fetchone()
    return (str(row[0]), str(row[1])) if row else None


def forget_build(conn: duckdb.DuckDBPyConnection) -> None:
    """Before dbt writes anything: a build that fails or stops half-way leaves no stamp behind."""
    if table_exists(conn, "pipeline", "dbt_build"):
        conn.execute("delete from pipeline.dbt_build")


def record_build(
    conn: duckdb.DuckDBPyConnection, inputs: str, window: tuple[str, str], run_id: str, started: dt.datetime
) -> None:
    """The complete build's stamp, and every load made before it ``started`` is now built (one transaction)."""
    conn.execute(BUILD_STAMP_DDL)
    with transaction(conn):
        conn.execute("delete from pipeline.dbt_build")
        conn.execute(
            "insert into pipeline.dbt_build values (?, ?, ?, ?, now())", [inputs, window[0], window[1], run_id]
        )
        mark_built(conn, started)


def build_window(conn: duckdb.DuckDBPyConnection) -> tuple[dt.date, dt.date] | None:
    """The business dates the next build covers: every load not yet built (a daily run's day, a backfill's
    range, and any earlier window whose build failed), else the last complete build's window, which a re-run
    then finds unchanged. None: the whole history (nothing loaded through the ledger, nothing built)."""
    pending = unbuilt_window(conn)
    if pending is not None:
        return pending
    if not table_exists(conn, "pipeline", "dbt_build"):
        return None
    rows = conn.execute("select window_start, window_end from pipeline.dbt_build").fetchall()
    row = rows[0] if rows else None
    if row is None or not row[0] or not row[1]:
        return None
    return dt.date.fromisoformat(str(row[0])), dt.date.fromisoformat(str(row[1]))


def window_span(window: tuple[dt.date, dt.date] | None) -> tuple[str, str]:
    """A window as the build digest and the stamp keep it (empty: the whole history)."""
    return (window[0].isoformat(), window[1].isoformat()) if window else ("", "")

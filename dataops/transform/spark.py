"""The dbt project on Apache Spark (``DATAOPS_ENGINE=spark``): what Spark reads, and what it built.

Ingestion does not change with the engine: it checks each extract against its contract and loads the raw
layer into the build warehouse, quarantining what fails. Spark reads that same raw layer, exported as
Parquet (one folder per table), never the landed extracts, which have not been through the contracts
(docs/decisions/0038). The export of a table is written aside and swapped in whole, so a run never reads
half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect, transaction

RAW_SCHEMA = "raw"


def export_raw(settings: Settings, limits: Limits | None = None) -> list[str]:
    """Write every table of the build warehouse's raw schema to ``spark_raw_dir/<table>/``; returns the tables."""
    target = settings.spark_raw_dir
    target.mkdir(parents=True, exist_ok=True)
    with connect(settings.build_db, read_only=True, limits=limits) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "select table_name from information_schema.tables where table_schema = ? order by 1", [RAW_SCHEMA]
            ).fetchall()
        ]
        for name in names:
            staged = target / f".{name}.{os.getpid()}"
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir()
            file = (staged / "part-0.parquet").as_posix().replace("'", "''")
            conn.execute(f"copy (select * from {RAW_SCHEMA}.{name}) to '{file}' (format parquet)")
            _swap(staged, target / name)
    return names


def _swap(staged: Path, final: Path) -> None:
    """Put a finished folder in place of the old one (two renames; the old one is removed after)."""
    old = final.with_name(f".{final.name}.old.{os.getpid()}")
    if final.exists():
        final.rename(old)
    staged.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def built_table(settings: Settings, schema: str, table: str) -> Path:
    """The folder of Parquet files of a table the dbt project built on the local Spark."""
    return settings.spark_dir / "warehouse" / f"{schema}.db" / table


def built_tables(manifest: dict[str, Any], results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(schema, table) of every model and seed a dbt run on Spark wrote as a table and finished with success.

    Views (the staging models on Spark) are left out: they hold no rows, and nothing after dbt reads them. The
    intermediate tables Spark builds come back like any table (the churn features read two).
    """
    succeeded = {r["unique_id"] for r in results if r["status"] == "success"}
    tables = []
    for uid in sorted(succeeded):
        node = manifest["nodes"].get(uid)
        if node is None or node["resource_type"] not in ("model", "seed"):
            continue
        if node["resource_type"] == "model" and node["config"].get("materialized") in ("view", "ephemeral"):
            continue
        tables.append((str(node["schema"]), str(node.get("alias") or node["name"])))
    return tables


def load_built(settings: Settings, target: Path, results: list[dict[str, Any]], limits: Limits | None = None) -> int:
    """Bring what a dbt run on Spark built back into the build warehouse; returns the number of tables.

    The cleansing gate, publishing and egress read the build warehouse whatever the engine, so they work
    unchanged (docs/decisions/0048). Every table is replaced in one transaction: a reader sees the warehouse
    as the last build left it or with all of this run's tables, never a mix.
    """
    manifest = json.loads((target / "manifest.json").read_text())
    tables = built_tables(manifest, results)
    with connect(settings.build_db, limits=limits) as conn, transaction(conn):
        for schema, table in tables:
            files = (built_table(settings, schema, table) / "*.parquet").as_posix().replace("'", "''")
            conn.execute(f'create schema if not exists "{schema}"')
            conn.execute(f'create or replace table "{schema}"."{table}" as select * from read_parquet(\'{files}\')')
    return len(tables)

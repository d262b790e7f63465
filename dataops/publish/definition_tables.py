"""The definitions' record in the analyst file: each definition's history, the adoptions, the impact reports.

They are datasets like the others: listed in ``catalog.datasets`` and ``catalog.columns`` with their
owner (data governance keeps the registry), published with the KPIs they explain.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl

from dataops.core.compatibility import attach_published
from dataops.governance.definition_versions import DEFINITION_TABLES
from dataops.governance.policy import load_policy
from registry.loader import domain_owners

SCHEMA = "definitions"
UPSTREAM = {
    "impact_kpis": ["kpis.kpi_daily", "kpis.kpi_monthly"],
    "impact_customers": ["marts.fct_customer_states_daily"],
    "history": ["registry/enterprise.yaml"],
    "adoptions": ["publish.kpi_restatements"],
}
GRAINS = {
    "impact_kpis": "one row per proposal, KPI, grain (day or month) and period",
    "impact_customers": "one row per proposal, customer and movement",
    "history": "one row per definition and version",
    "adoptions": "one row per proposal or adoption",
}


def definitions_in_catalog(
    catalog: pl.DataFrame,
    columns: pl.DataFrame,
    tables: dict[str, pl.DataFrame],
    published_at: dt.datetime,
    as_of: dt.date | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The catalog's rows for the definition tables, added to the dbt datasets' rows."""
    readers = json.dumps(list(load_policy().roles))  # internal: every role reads them
    owner = domain_owners().get("kpis", "data-governance")
    rows, cols = [], []
    for name, frame in tables.items():
        dataset = f"{SCHEMA}.{name}"
        rows.append(
            {
                "dataset": dataset,
                "description": DEFINITION_TABLES[name],
                "owner": owner,
                "domain": "kpis",
                "grain": GRAINS[name],
                "classification": "internal",
                "created_at": published_at,  # rewritten whole by every publish
                "last_modified_at": published_at,
                "published_at": published_at,
                "data_as_of": as_of,
                "row_count": frame.height,
                "check_status": "no checks",
                "access_roles": readers,
                "clear_personal_data_roles": readers,
                "published_file": "general",
                "archive_state": "nothing archived",
                "archived_partitions": 0,
                "checks": json.dumps({"gate": [], "dbt_tests": 0, "constraints": 0}),
                "notes": "Written by `dataops definitions propose` and `adopt` (docs/definitions.md).",
            }
            | {"upstream": json.dumps(UPSTREAM[name])}
            | dict.fromkeys(("key_columns", "sort_order", "pii_columns", "source_systems"), "[]")
            | dict.fromkeys(("tags", "caveats", "example_queries", "domain_notes_by"), "[]")
        )
        for column, dtype in frame.schema.items():
            cols.append(
                {
                    "dataset": dataset,
                    "column_name": column,
                    "data_type": str(dtype),
                    "description": "",
                    "is_pii": False,
                    "published_as": "clear",
                }
            )
    return (
        pl.concat([catalog, pl.DataFrame(rows)], how="diagonal_relaxed"),
        pl.concat([columns, pl.DataFrame(cols)], how="diagonal_relaxed"),
    )


def write_definition_tables(conn: duckdb.DuckDBPyConnection, aside: Path, tables: dict[str, pl.DataFrame]) -> None:
    """Write the tables into the analyst file being prepared (before it is swapped in)."""
    conn.execute(attach_published(aside, "analytics"))
    try:
        conn.execute(f"create schema analytics.{SCHEMA}")
        for name, frame in tables.items():
            conn.register("_definition_table", frame)
            conn.execute(f"create table analytics.{SCHEMA}.{name} as select * from _definition_table")
            conn.unregister("_definition_table")
        conn.execute("checkpoint analytics")
    finally:
        conn.execute("detach analytics")

"""The catalog: every published dataset with what it declares, what the pipeline recorded about it, who may
read it, and what its domain team knows; published as ``catalog.datasets`` and ``catalog.columns``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from dataops.governance.metadata import DatasetMeta
from dataops.governance.policy import Policy
from registry.loader import domain_notes

GOVERNANCE_DDL = """
create schema if not exists governance;
create table if not exists governance.dataset_history (
    dataset varchar primary key, first_published_at timestamptz, last_modified_at timestamptz,
    fingerprint varchar, last_published_at timestamptz);
create table if not exists governance.archive_log (
    dataset varchar, period varchar, location varchar, rows bigint, archived_at timestamptz,
    restored_at timestamptz);
"""
# The gate's checks on each dataset (orchestration/defs/quality.py); dbt tests come from the manifest.
GATE_CHECKS = {
    "marts.fct_customer_states_daily": ["customer_states_are_consistent"],
    "marts.fct_invoices": ["payments_within_invoiced"],
    "marts.fct_contracts": ["contract_amounts_consistent"],
    "kpis.kpi_daily": ["kpi_values_valid", "kpis_consistent", "kpi_movements_plausible"],
    "marts.customer_churn_risk": ["churn_scores_not_degenerate", "churn_features_not_drifted"],
}


def dbt_tests_by_dataset(manifest: dict[str, Any], datasets: dict[str, DatasetMeta]) -> dict[str, int]:
    by_id = {
        f"{n['schema']}.{n['name']}": uid
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] in {"model", "seed"}
    }
    counts: dict[str, int] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        for parent in node.get("depends_on", {}).get("nodes", []):
            for dataset, uid in by_id.items():
                if uid == parent and dataset in datasets:
                    counts[dataset] = counts.get(dataset, 0) + rules_in_test(node)
    return counts


def rules_in_test(node: dict[str, Any]) -> int:
    """The rules one dbt test checks: a model's ``column_rules`` test holds all its not-null, accepted-values and
    uniqueness rules in one node (docs/decisions/0095, 0098), and the catalog counts rules, whichever way dbt
    runs them: a column unique on its own or a set of columns unique together is one rule, as its test was."""
    meta = node.get("test_metadata") or {}
    if meta.get("name") != "column_rules":
        return 1
    arguments = meta.get("kwargs") or {}
    rules = ("not_null", "accepted_values", "unique", "unique_together")
    return sum(len(arguments.get(rule) or []) for rule in rules)


def dbt_constraints_by_dataset(manifest: dict[str, Any], datasets: dict[str, DatasetMeta]) -> dict[str, int]:
    """Contract constraints (the marts' not-null columns, docs/decisions/0019): rules DuckDB enforces while it
    writes the table, so they have no test node of their own."""
    counts: dict[str, int] = {}
    for node in manifest["nodes"].values():
        name = f"{node.get('schema')}.{node.get('name')}"
        if node["resource_type"] == "model" and name in datasets:
            found = len(node.get("constraints") or []) + sum(
                len(column.get("constraints") or []) for column in node["columns"].values()
            )
            if found:
                counts[name] = found
    return counts


def record_publication(conn: duckdb.DuckDBPyConnection, fingerprint: dict[str, str], published_at: dt.datetime) -> None:
    """Created, last modified and published times per dataset (modified when its content fingerprint moved:
    ``fingerprint``: columns, rows and sum of row hashes, from the digests the published files keep)."""
    conn.execute(GOVERNANCE_DDL)
    for dataset, found in fingerprint.items():
        conn.execute(
            """
            insert into governance.dataset_history values ($d, $at, $at, $f, $at)
            on conflict (dataset) do update set
                last_modified_at = case when governance.dataset_history.fingerprint = $f
                                        then governance.dataset_history.last_modified_at else $at end,
                fingerprint = $f, last_published_at = $at
        """,
            {"d": dataset, "at": published_at, "f": found},
        )


@dataclass(frozen=True)
class _Records:
    """What the catalog reads besides a dataset's declaration: notes, dbt's checks, publish and archive history."""

    notes: dict[str, list[Any]]
    tests: dict[str, int]
    constraints: dict[str, int]
    history: dict[str, tuple[Any, ...]]
    archives: dict[str, tuple[Any, ...]]


def _records(conn: duckdb.DuckDBPyConnection, manifest: dict[str, Any], datasets: dict[str, DatasetMeta]) -> _Records:
    history = "select dataset, first_published_at, last_modified_at from governance.dataset_history"
    archives = (
        "select dataset, count(*) filter (where restored_at is null), max(archived_at) "
        "from governance.archive_log group by 1"
    )
    return _Records(
        notes=domain_notes(),
        tests=dbt_tests_by_dataset(manifest, datasets),
        constraints=dbt_constraints_by_dataset(manifest, datasets),
        history={r[0]: r[1:] for r in conn.execute(history).fetchall()},
        archives={r[0]: r[1:] for r in conn.execute(archives).fetchall()},
    )


def build_catalog(
    conn: duckdb.DuckDBPyConnection,
    datasets: dict[str, DatasetMeta],
    manifest: dict[str, Any],
    policy: Policy,
    published_at: dt.datetime,
    as_of: dt.date | None,
    restricted: set[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two catalog tables, from declarations, the build warehouse's records and the policy."""
    records = _records(conn, manifest, datasets)
    published = {"published_at": published_at, "data_as_of": as_of}
    rows = [
        _dataset_row(conn, name, ds, records, policy, published, name in restricted)
        for name, ds in sorted(datasets.items())
    ]
    columns = [column for name, ds in sorted(datasets.items()) for column in _column_rows(name, ds)]
    return pl.DataFrame(rows, infer_schema_length=None), pl.DataFrame(columns, infer_schema_length=None)


def _dataset_row(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    ds: DatasetMeta,
    records: _Records,
    policy: Policy,
    published: dict[str, Any],
    restricted: bool,
) -> dict[str, Any]:
    meta = ds.meta
    row_count = conn.execute(f"select count(*) from {name}").fetchall()[0][0]
    blocks = conn.execute(
        f"select count(distinct block_id) from pragma_storage_info('{name}') where block_id >= 0"
    ).fetchall()[0][0]
    created, modified = records.history.get(name, (published["published_at"], published["published_at"]))
    archived, last_archived = records.archives.get(name, (0, None))
    domain = records.notes.get(name, [])
    checks = {
        "gate": GATE_CHECKS.get(name, []),
        "dbt_tests": records.tests.get(name, 0),
        "constraints": records.constraints.get(name, 0),
    }
    readers = policy.readers(name, ds.classification)
    return {
        "dataset": name,
        "description": ds.description,
        "owner": meta.get("owner"),
        "domain": meta.get("domain"),
        "grain": meta.get("grain"),
        "key_columns": json.dumps(meta.get("key") or []),
        "sort_order": json.dumps(meta.get("sort_order") or []),
        "classification": ds.classification,
        "pii_columns": json.dumps(ds.pii_columns),
        "source_systems": json.dumps(ds.source_systems),
        "upstream": json.dumps(ds.upstream),
        "refresh_schedule": meta.get("refresh_schedule"),
        "retention_days": meta.get("retention_days"),
        "created_at": created,
        "last_modified_at": modified,
        **published,
        "row_count": row_count,
        "size_bytes": blocks * 262_144,
        "check_status": "passed" if any(checks.values()) else "no checks",
        "checks": json.dumps(checks),
        "access_roles": json.dumps(readers),
        "clear_personal_data_roles": json.dumps(
            policy.clear_personal_data_readers(name) if ds.pii_columns else readers
        ),
        "published_file": "restricted" if restricted else "general",
        "archived_partitions": archived,
        "last_archived_at": last_archived,
        "archive_state": f"{archived} period(s) archived" if archived else "nothing archived",
        "notes": " ".join(n.notes for n in domain if n.notes),
        "tags": json.dumps(sorted({t for n in domain for t in n.tags})),
        "caveats": json.dumps([c for n in domain for c in n.caveats]),
        "example_queries": json.dumps([q for n in domain for q in n.example_queries]),
        "domain_notes_by": json.dumps(sorted({f"{n.domain} ({n.owner})" for n in domain})),
    }


def _column_rows(name: str, ds: DatasetMeta) -> list[dict[str, Any]]:
    rows = []
    for column in ds.columns:
        if ds.classification == "restricted":
            shown = "restricted file only"
        elif column.is_pii:
            shown = "pseudonymised (clear in the restricted file)"
        else:
            shown = "clear"
        rows.append(
            {
                "dataset": name,
                "column_name": column.name,
                "data_type": column.data_type,
                "description": column.description,
                "is_pii": column.is_pii,
                "published_as": shown,
            }
        )
    return rows


def search(conn: duckdb.DuckDBPyConnection, text: str) -> pl.DataFrame:
    """Datasets whose name, description, notes, tags, caveats or columns mention the text."""
    like = f"%{text.lower()}%"
    return conn.sql(
        """
        select d.dataset, d.classification, d.owner, d.domain, d.description, d.notes, d.tags
        from catalog.datasets as d
        where lower(d.dataset || ' ' || d.description || ' ' || coalesce(d.notes, '') || ' ' || d.tags || ' '
                    || d.caveats || ' ' || coalesce(d.domain, '')) like $like
           or d.dataset in (select dataset from catalog.columns
                            where lower(column_name || ' ' || description) like $like)
        order by d.dataset
    """,
        params={"like": like},
    ).pl()

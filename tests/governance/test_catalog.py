"""The metadata protocol, the catalog, files that hold up when opened directly, and retention."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import stat
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from application.cli.main import app
from dataops.core.settings import Settings
from dataops.governance.archive import archive, archive_log, plan_lake, restore_all
from dataops.governance.catalog import dbt_tests_by_dataset
from dataops.governance.definition_versions import DEFINITION_TABLES
from dataops.governance.metadata import (
    REQUIRED_FIELDS,
    DatasetMeta,
    load_manifest,
    metadata_problems,
    published_datasets,
)
from dataops.ingest import lake
from dataops.publish.analyst_warehouse import model_datasets, publish
from quality.contracts import CONTRACTS
from tests.conftest import BUILT_DAYS, BUILT_START
from tests.governance.conftest import Governed
from tests.pipeline import environment

pytestmark = pytest.mark.xdist_group("built")


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_every_published_dataset_declares_the_required_metadata() -> None:
    datasets = published_datasets(load_manifest())
    assert len(datasets) >= 18
    assert metadata_problems(datasets) == []


@pytest.mark.parametrize("field", ["domain", "description", "classification"])
def test_removing_a_required_field_from_any_dataset_is_caught(field: str) -> None:
    """A dataset's owner is its domain's (registry/domains): without a domain it has no owner either."""
    manifest = load_manifest()
    for name in published_datasets(manifest):
        broken = copy.deepcopy(manifest)
        node = next(n for n in broken["nodes"].values() if f"{n['schema']}.{n['name']}" == name)
        if field == "description":
            node["description"] = ""
        else:
            node["meta"].pop(field, None)
            node["config"]["meta"].pop(field, None)
        problems = metadata_problems(published_datasets(broken))
        assert f"{name}: missing {field}" in problems, name
        if field == "domain":
            assert f"{name}: missing owner" in problems, name
    assert set(REQUIRED_FIELDS) >= {"owner", "description", "domain", "grain", "key", "retention_days"}


def test_the_catalog_lists_every_published_dataset_with_its_state(governed: Governed) -> None:
    declared = set(published_datasets(load_manifest())) | set(model_datasets())  # dbt's and the churn scores
    analytics = governed.settings.analytics_db
    catalog = {
        r[0]: r[1:]
        for r in rows(
            analytics,
            "select dataset, published_at, data_as_of, check_status, access_roles, archive_state, owner, "
            "row_count, upstream from catalog.datasets",
        )
    }
    assert set(catalog) == declared | {f"definitions.{name}" for name in DEFINITION_TABLES}  # the definitions' record
    for name, (published_at, as_of, checks, access, archived, owner, count, upstream) in catalog.items():
        assert published_at is not None and as_of is not None, name  # freshness
        assert checks in {"passed", "no checks"} and archived and owner, name
        assert "data_engineer" in json.loads(access), name
        assert count >= 0 and (json.loads(upstream) or name.startswith("reference.")), name
    assert set(json.loads(catalog["marts.fct_gl_entries"][3])) == {"data_engineer", "executive", "finance"}
    assert len(json.loads(catalog["marts.dim_customers"][3])) == 6  # opt-out: every role
    (checks,) = rows(analytics, "select checks from catalog.datasets where dataset = 'marts.fct_contracts'")[0]
    assert json.loads(checks)["constraints"] == 2  # contract_id and customer_id: enforced not null
    columns = rows(analytics, "select count(*), count(*) filter (where is_pii) from catalog.columns")[0]
    assert columns[0] > 100 and columns[1] >= 2


def test_the_catalog_counts_each_rule_of_a_models_column_rules_test() -> None:
    """One ``column_rules`` node holds a model's not-null, accepted-values and uniqueness rules (decisions 0095,
    0098): the catalog counts the rules, as it did when dbt ran a node per rule (a key of several columns: one)."""

    def test(name: str, kwargs: dict[str, object]) -> dict[str, object]:
        return {
            "resource_type": "test",
            "test_metadata": {"name": name, "kwargs": kwargs},
            "depends_on": {"nodes": ["model.dataops.fct_x"]},
        }

    manifest = {
        "nodes": {
            "model.dataops.fct_x": {"resource_type": "model", "schema": "marts", "name": "fct_x"},
            "test.a": test(
                "column_rules",
                {
                    "not_null": ["a", "b"],
                    "accepted_values": {"status": ["on", "off"]},
                    "unique": ["a", "c"],
                    "unique_together": [["b", "status"]],
                },
            ),
            "test.b": test("relationships", {"column_name": "a", "to": "ref('dim_y')", "field": "a"}),
        }
    }
    datasets = {"marts.fct_x": DatasetMeta("marts.fct_x", "x", {}, [])}
    assert dbt_tests_by_dataset(manifest, datasets) == {"marts.fct_x": 7}


def test_a_domain_note_appears_in_the_catalog_and_in_search(governed: Governed) -> None:
    (notes,) = rows(
        governed.settings.analytics_db, "select notes from catalog.datasets where dataset = 'marts.dim_customers'"
    )[0]
    assert "ultimate parent organisation" in notes
    with environment(DATAOPS_DATA_DIR=str(governed.settings.data_dir)):
        found = CliRunner().invoke(app, ["catalog", "search", "customer-360"])
    assert found.exit_code == 0, found.output
    assert "marts.dim_customers" in found.output


def test_the_general_file_holds_no_personal_data_in_clear(governed: Governed) -> None:
    settings = governed.settings
    restricted = settings.restricted_db
    assert stat.S_IMODE(restricted.stat().st_mode) == 0o600
    assert not stat.S_IMODE(settings.analytics_db.stat().st_mode) & 0o222  # read-only for everyone
    clear = {
        str(value)
        for (value,) in rows(restricted, "select email from marts.dim_people union select email from marts.fct_leads")
        if value
    }
    assert len(clear) > 50 and all("@" in v for v in clear)
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        tables = conn.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = 'analytics'"
        ).fetchall()
        assert ("marts", "fct_gl_entries") not in tables  # restricted: only in the restricted file
        leaked = []
        for schema, table in tables:
            for (column,) in conn.execute(
                "select column_name from duckdb_columns() where schema_name = ? and table_name = ? "
                "and data_type = 'VARCHAR'",
                [schema, table],
            ).fetchall():
                values = {v for (v,) in conn.execute(f'select distinct "{column}" from {schema}.{table}').fetchall()}
                if values & clear:
                    leaked.append(f"{schema}.{table}.{column}")
    assert leaked == []


def test_archiving_past_retention_moves_records_and_restores_without_loss(governed: Governed, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(governed.settings.data_dir, root)
    settings = Settings(root)
    states = "marts.fct_customer_states_daily"
    lake_before = sorted(p.relative_to(root).as_posix() for p in settings.lake_dir.rglob("*.parquet"))
    facts_before = rows(settings.build_db, f"select * from {states} order by all")
    ((january,),) = rows(settings.build_db, f"select count(*) from {states} where date_day < '2025-02-01'")
    as_of = BUILT_START + dt.timedelta(days=730 + 35)  # the first 35 days are past the 730-day retention

    done = archive(settings, published_datasets(load_manifest()), as_of)

    lake_items = [a for a in done if a.dataset.startswith("lake.")]
    assert all(any(item.location.rglob("*.parquet")) for item in lake_items)
    moved = {(a.dataset, day) for a in lake_items for day in span(a.period)}
    kept = {(k.dataset, day) for k in plan_lake(settings, as_of)[1] for day in k.days}
    assert moved | kept and not moved & kept
    for contract in CONTRACTS.values():  # every landed day past retention moved with all its copies, or is kept
        cutoff = as_of - dt.timedelta(days=contract.retention_days)
        dataset = f"lake.{contract.name}"
        for days, _ in lake.move_groups(settings.lake_dir, contract.system, contract.table):
            assert {(dataset, day) for day in days if day < cutoff} <= kept, dataset
        for day in {day for name, day in moved if name == dataset}:
            assert day < cutoff and not any(
                v.rows.get(day) for v in lake.versions(settings.lake_dir, contract.system, contract.table, day)
            )
    fact_items = [a for a in done if a.dataset == states]
    assert [a.period for a in fact_items] == ["2025-01"]
    assert rows(settings.build_db, f"select count(*) from {states} where date_day < '2025-02-01'") == [(0,)]
    assert fact_items[0].rows == january > 0
    assert len(archive_log(settings)) == len(done)
    end = BUILT_START + dt.timedelta(days=BUILT_DAYS - 1)
    publish(settings, (BUILT_START, end), run_id="archived")
    (state,) = rows(settings.analytics_db, f"select archive_state from catalog.datasets where dataset = '{states}'")[0]
    assert state == "1 period(s) archived"
    assert rows(settings.analytics_db, f"select count(*) from catalog.archives where dataset = '{states}'") == [(1,)]

    restored = restore_all(settings)

    assert len(restored) == len(done)
    assert sorted(p.relative_to(root).as_posix() for p in settings.lake_dir.rglob("*.parquet")) == lake_before
    assert rows(settings.build_db, f"select * from {states} order by all") == facts_before
    assert all(r[4] is not None for r in archive_log(settings))  # every period marked restored


def span(period: str) -> list[dt.date]:
    """The days of an archived lake period: a day, or ``<first>..<last>``."""
    first, _, last = period.partition("..")
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def test_a_manifest_caught_half_written_is_read_again_and_a_broken_one_is_named(tmp_path: Path) -> None:
    """dbt rewrites target/manifest.json in place: a reader that catches it half written reads it again."""
    import threading

    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"nodes": {"model.dataops.x": {"na')  # dbt still writing
    finish = threading.Timer(0.3, lambda: manifest.write_text('{"nodes": {}}'))
    finish.start()
    try:
        assert load_manifest(manifest) == {"nodes": {}}
    finally:
        finish.join()

    manifest.write_text("{")
    with pytest.raises(ValueError, match=r"manifest\.json is not valid JSON.*dataops dbt parse"):
        load_manifest(manifest, attempts=2)


def test_a_restore_that_cannot_mark_its_log_puts_no_rows_back(governed: Governed, tmp_path: Path) -> None:
    """Restored rows and the log that says so land together: the log is how a re-run sees that the marts
    changed (docs/decisions/0021), so rows back with an unchanged log would never be published."""
    from typing import Any, cast

    from dataops.governance.archive import _restore

    root = tmp_path / "data"
    shutil.copytree(governed.settings.data_dir, root)
    settings = Settings(root)
    states = "marts.fct_customer_states_daily"
    archive(settings, published_datasets(load_manifest()), BUILT_START + dt.timedelta(days=730 + 35))
    archived = rows(settings.build_db, f"select count(*) from {states}")

    class LogWriteFails:
        """The build warehouse, failing the statement that marks the log (a full disk, a killed process)."""

        def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
            self.conn = conn

        def execute(self, sql: str, *args: Any) -> duckdb.DuckDBPyConnection:
            if sql.startswith("update governance.archive_log"):
                raise duckdb.IOException("no space left on device")
            return self.conn.execute(sql, *args)

    with duckdb.connect(str(settings.build_db)) as conn, pytest.raises(duckdb.IOException, match="no space"):
        _restore(cast(Any, LogWriteFails(conn)), settings, states, "2025-01")

    assert rows(settings.build_db, f"select count(*) from {states}") == archived  # nothing came back
    waiting = f"select count(*) from governance.archive_log where dataset = '{states}' and restored_at is null"
    assert rows(settings.build_db, waiting) == [(1,)]
    restore_all(settings, states)
    assert rows(settings.build_db, waiting) == [(0,)]

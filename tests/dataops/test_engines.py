"""Choosing the engine and the instance's storage is configuration, checked when read; what Spark reads is
the raw layer as it is at the start of a run."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings, dagster_storage, engine, environ, postgres_url
from dataops.transform.spark import built_table, export_raw, load_built


def test_the_engine_and_the_storage_default_to_one_machine_and_refuse_unknown_values() -> None:
    with environ({"DATAOPS_ENGINE": None, "DATAOPS_DAGSTER_STORAGE": None}):
        assert (engine(), dagster_storage()) == ("duckdb", "sqlite")
    with environ({"DATAOPS_ENGINE": "Spark", "DATAOPS_DAGSTER_STORAGE": "postgres"}):
        assert (engine(), dagster_storage()) == ("spark", "postgres")
    with environ({"DATAOPS_ENGINE": "snowflake"}), pytest.raises(ValueError, match="duckdb, spark"):
        engine()


def test_the_postgres_url_is_required_and_given_the_driver_dagster_postgres_brings() -> None:
    with environ({"DATAOPS_PG_URL": None}), pytest.raises(ValueError, match="needs DATAOPS_PG_URL"):
        postgres_url()
    with environ({"DATAOPS_PG_URL": "postgresql://dagster@db:5432/dagster"}):
        assert postgres_url() == "postgresql+psycopg2://dagster@db:5432/dagster"
    with environ({"DATAOPS_PG_URL": "mysql://x@db/d"}), pytest.raises(ValueError, match="postgresql://"):
        postgres_url()


def test_each_export_of_the_raw_layer_replaces_the_last_whole(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    settings.build_db.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute("create schema raw; create table raw.erp__customers as select range as id from range(3)")
        conn.execute("create schema marts; create table marts.dim_x as select 1 as id")
    assert export_raw(settings) == ["erp__customers"]
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute("delete from raw.erp__customers where id = 0")
    export_raw(settings)
    exported = pl.read_parquet(settings.spark_raw_dir / "erp__customers" / "*.parquet")
    assert sorted(exported["id"].to_list()) == [1, 2]
    assert [p.name for p in settings.spark_raw_dir.iterdir()] == ["erp__customers"]  # nothing staged left


def _spark_table(settings: Settings, schema: str, table: str, frame: pl.DataFrame) -> None:
    folder = built_table(settings, schema, table)
    folder.mkdir(parents=True)
    frame.write_parquet(folder / "part-00000.parquet")
    (folder / "_SUCCESS").touch()  # Spark's marker, not data


def test_what_spark_built_replaces_the_build_warehouse_tables_at_once_views_and_failures_left_out(
    tmp_path: Path,
) -> None:
    settings = Settings(tmp_path)
    nodes = {
        "model.p.kpi_daily": {"resource_type": "model", "schema": "kpis", "name": "kpi_daily", "config": {}},
        "model.p.fct_x": {"resource_type": "model", "schema": "marts", "name": "fct_x", "alias": "fct_x", "config": {}},
        "model.p.stg_y": {
            "resource_type": "model",
            "schema": "staging",
            "name": "stg_y",
            "config": {"materialized": "view"},
        },
        "seed.p.ref": {"resource_type": "seed", "schema": "reference", "name": "ref", "config": {}},
        "model.p.broken": {"resource_type": "model", "schema": "marts", "name": "broken", "config": {}},
        "test.p.not_null": {"resource_type": "test", "schema": "kpis", "name": "not_null", "config": {}},
    }
    results = [{"unique_id": uid, "status": "success"} for uid in nodes if uid != "model.p.broken"]
    results.append({"unique_id": "model.p.broken", "status": "error"})
    target = tmp_path / "target"
    target.mkdir()
    (target / "manifest.json").write_text(json.dumps({"nodes": nodes}))
    _spark_table(settings, "kpis", "kpi_daily", pl.DataFrame({"kpi_name": ["mrr_usd"], "value": [2.5]}))
    _spark_table(settings, "marts", "fct_x", pl.DataFrame({"id": [1, 2]}))
    _spark_table(settings, "reference", "ref", pl.DataFrame({"code": ["a"]}))
    settings.build_db.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.build_db)) as conn:  # the last build's rows, which this one replaces
        conn.execute("create schema kpis; create table kpis.kpi_daily as select 'old' as kpi_name, 1.0 as value")
        conn.execute("create schema marts; create table marts.broken as select 7 as kept")

    assert load_built(settings, target, results) == 3
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        assert conn.execute("select * from kpis.kpi_daily").fetchall() == [("mrr_usd", 2.5)]
        assert conn.execute("select count(*) from marts.fct_x").fetchone() == (2,)
        assert conn.execute("select * from reference.ref").fetchall() == [("a",)]
        assert conn.execute("select * from marts.broken").fetchall() == [(7,)]  # dbt failed it: not replaced
        tables = conn.execute("select table_schema from information_schema.tables").fetchall()
    assert ("staging",) not in tables

    # the next build: kpi_daily changed, and the seed's file is broken (loaded after kpi_daily)
    pl.DataFrame({"kpi_name": ["mrr_usd"], "value": [3.5]}).write_parquet(
        built_table(settings, "kpis", "kpi_daily") / "part-00000.parquet"
    )
    (built_table(settings, "reference", "ref") / "part-00000.parquet").write_text("not parquet")
    with pytest.raises(duckdb.Error):
        load_built(settings, target, results)
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:  # nothing of the failed load is visible
        assert conn.execute("select * from kpis.kpi_daily").fetchall() == [("mrr_usd", 2.5)]

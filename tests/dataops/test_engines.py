"""Choosing the engine and the instance's storage is configuration, checked when read; what Spark reads is
the raw layer as it is at the start of a run."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings, dagster_storage, engine, environ, postgres_url
from dataops.transform.runner import EngineNotSupported, start_dbt
from dataops.transform.spark import export_raw


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


def test_the_dagster_dbt_step_refuses_spark_rather_than_leave_the_warehouse_stale(tmp_path: Path) -> None:
    with environ({"DATAOPS_ENGINE": "spark"}), pytest.raises(EngineNotSupported, match="DuckDB only"):
        start_dbt(["build"], Settings(tmp_path), tmp_path / "target")

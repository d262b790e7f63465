"""The dbt project on a local Apache Spark (DATAOPS_ENGINE=spark): the same models over the same raw layer give
the same KPIs as DuckDB and as the simulator's truth, on every day and for every KPI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings, environ
from dataops.transform.runner import run_dbt
from dataops.transform.spark import built_table
from registry.loader import load_registry
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import run_job

# Spark starts a JVM and runs each statement through its scheduler: minutes for the project, even on 4 days.
pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.xdist_group("spark"), pytest.mark.timeout(3600)]

START = dt.date(2025, 3, 3)
DAYS = 4
KEY = ["date_day", "kpi_name"]


@pytest.fixture(scope="module")
def on_both(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few simulated days through the pipeline on DuckDB, then the dbt project again on Spark."""
    root = tmp_path_factory.mktemp("engines")
    end = START + dt.timedelta(days=DAYS - 1)
    simulate(Settings(root).sources_dir, end, SimConfig(seed=5, scale=0.02, start=START, product_events=False))
    assert run_job(root, START, end).success
    with environ({"DATAOPS_ENGINE": "spark"}):
        result = run_dbt(["build", "--exclude", "resource_type:test", "resource_type:unit_test"], Settings(root))
    assert result.success, result.output[-5000:]
    return root


def spark_kpis(root: Path) -> pl.DataFrame:
    """kpi_daily as Spark wrote it (Parquet files under its warehouse folder), read without Spark."""
    files = built_table(Settings(root), "kpis", "kpi_daily") / "*.parquet"
    return pl.read_parquet(files).select(*KEY, pl.col("value").alias("spark"))


def duckdb_kpis(root: Path) -> pl.DataFrame:
    with duckdb.connect(str(Settings(root).build_db), read_only=True) as conn:
        return conn.sql("select date_day, kpi_name, value as duckdb from kpis.kpi_daily").pl()


def truth(root: Path) -> pl.DataFrame:
    frame = pl.read_parquet(Settings(root).truth_dir / "kpi_daily.parquet")
    return frame.rename({"date": "date_day", "kpi": "kpi_name", "value": "truth"})


def test_every_kpi_on_every_day_on_spark_equals_duckdb_and_the_truth(on_both: Path) -> None:
    spark = spark_kpis(on_both)
    assert spark.height == DAYS * len(load_registry().kpis)
    joined = truth(on_both).join(duckdb_kpis(on_both), on=KEY, how="full", coalesce=True)
    joined = joined.join(spark, on=KEY, how="full", coalesce=True)
    differ = joined.filter(
        pl.any_horizontal(pl.col("truth", "duckdb", "spark").is_null())
        | (pl.col("spark") != pl.col("duckdb"))
        | (pl.col("spark") != pl.col("truth"))
    )
    assert differ.height == 0, differ.head(20)
    # not trivially about zeros: the business happened in these few days
    totals = dict(spark.group_by("kpi_name").agg(pl.col("spark").sum()).iter_rows())
    for kpi in ("active_customers", "mrr_usd", "billings_usd", "revenue_usd", "pipeline_usd"):
        assert totals[kpi] > 0, kpi

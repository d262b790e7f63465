"""The dbt project on a local Apache Spark (DATAOPS_ENGINE=spark): the same Dagster job, its dbt step on Spark,
gives the same KPIs as on DuckDB and as the simulator's truth, on every day and for every KPI, and publishes
them through the same gate with the same assets and checks."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.transform.spark import built_table
from orchestration.lib.dbt import dbt_project, translator
from registry.loader import load_registry
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import run_job

# Spark starts a JVM and runs each statement through its scheduler: minutes for the project, even on 4 days.
pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.xdist_group("spark"), pytest.mark.timeout(3600)]

START = dt.date(2025, 3, 3)
DAYS = 4
KEY = ["date_day", "kpi_name"]


@dataclass
class Run:
    root: Path
    result: dg.ExecuteInProcessResult


@dataclass
class Engines:
    duckdb: Run
    spark: Run


def _run(root: Path, engine: str) -> Run:
    end = START + dt.timedelta(days=DAYS - 1)
    simulate(Settings(root).sources_dir, end, SimConfig(seed=5, scale=0.02, start=START, product_events=False))
    result = run_job(root, START, end, DATAOPS_ENGINE=engine)
    assert result.success
    return Run(root, result)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Engines:
    """The same simulated days through the same Dagster job twice: dbt on DuckDB, then dbt on Spark."""
    on_duckdb = _run(tmp_path_factory.mktemp("duckdb"), "duckdb")
    return Engines(on_duckdb, _run(tmp_path_factory.mktemp("spark"), "spark"))


def spark_kpis(root: Path) -> pl.DataFrame:
    """kpi_daily as Spark wrote it (Parquet files under its warehouse folder), read without Spark."""
    files = built_table(Settings(root), "kpis", "kpi_daily") / "*.parquet"
    return pl.read_parquet(files).select(*KEY, pl.col("value").alias("spark"))


def kpis(database: Path, name: str) -> pl.DataFrame:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.sql(f"select date_day, kpi_name, value as {name} from kpis.kpi_daily").pl()


def truth(root: Path) -> pl.DataFrame:
    frame = pl.read_parquet(Settings(root).truth_dir / "kpi_daily.parquet")
    return frame.rename({"date": "date_day", "kpi": "kpi_name", "value": "truth"})


def assert_equal(frames: list[pl.DataFrame]) -> None:
    """Every KPI on every day present in each frame, with the same value."""
    names = [frame.columns[-1] for frame in frames]
    joined = frames[0]
    for frame in frames[1:]:
        joined = joined.join(frame, on=KEY, how="full", coalesce=True)
    first = pl.col(names[0])
    differ = joined.filter(
        pl.any_horizontal(pl.col(*names).is_null()) | pl.any_horizontal(*(pl.col(n) != first for n in names[1:]))
    )
    assert differ.height == 0, differ.head(20)


def test_every_kpi_on_every_day_on_spark_equals_duckdb_and_the_truth(engines: Engines) -> None:
    spark = spark_kpis(engines.spark.root)
    assert spark.height == DAYS * len(load_registry().kpis)
    assert_equal([truth(engines.spark.root), kpis(Settings(engines.duckdb.root).build_db, "duckdb"), spark])
    # not trivially about zeros: the business happened in these few days
    totals = dict(spark.group_by("kpi_name").agg(pl.col("spark").sum()).iter_rows())
    for kpi in ("active_customers", "mrr_usd", "billings_usd", "revenue_usd", "pipeline_usd"):
        assert totals[kpi] > 0, kpi


def test_the_dagster_job_on_spark_publishes_what_it_does_on_duckdb(engines: Engines) -> None:
    """The gate and publishing read what Spark built (loaded back into the build warehouse), not a stale build."""
    published = {run: Settings(getattr(engines, run).root).analytics_db for run in ("duckdb", "spark")}
    frames = [kpis(published["spark"], "spark"), kpis(published["duckdb"], "duckdb"), truth(engines.spark.root)]
    assert frames[0].height == DAYS * len(load_registry().kpis)
    assert_equal(frames)


def disabled_on_spark(engines: Engines) -> set[dg.AssetKey]:
    """The assets of the models the Spark run's dbt had disabled (the usage models: the product's event lake
    is read on DuckDB only, docs/deployment.md), named as the DuckDB run's manifest names them."""
    manifests = [
        json.loads((Settings(run.root).dbt_runs_dir / run.result.run_id / "manifest.json").read_text())
        for run in (engines.spark, engines.duckdb)
    ]
    disabled = {uid for uid in manifests[0]["disabled"] if uid.startswith("model.")}
    assert disabled <= set(manifests[1]["nodes"])
    return {translator().get_asset_spec(manifests[1], uid, dbt_project()).key for uid in disabled}


def test_an_operator_sees_the_same_assets_and_checks_with_either_engine(engines: Engines) -> None:
    def seen(result: dg.ExecuteInProcessResult) -> tuple[set[dg.AssetKey], dict[tuple[dg.AssetKey, str], bool]]:
        assets = {event.asset_key for event in result.get_asset_materialization_events() if event.asset_key}
        checks = {(c.asset_key, c.check_name): c.passed for c in result.get_asset_check_evaluations()}
        return assets, checks

    duck_assets, duck_checks = seen(engines.duckdb.result)
    spark_assets, spark_checks = seen(engines.spark.result)
    duckdb_only = disabled_on_spark(engines)
    assert duckdb_only < duck_assets
    assert spark_assets == duck_assets - duckdb_only
    assert spark_checks == {key: passed for key, passed in duck_checks.items() if key[0] not in duckdb_only}
    assert any(key.path[0] == "kpis" for key, _ in spark_checks)  # the dbt tests and the gate, on Spark's tables

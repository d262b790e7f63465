"""The pipeline's KPIs equal the simulator's truth, exactly, on every day and for every KPI."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings
from registry.loader import load_registry
from tests.transforms.conftest import DAYS

pytestmark = pytest.mark.xdist_group("built")


def kpis(root: Path) -> pl.DataFrame:
    with duckdb.connect(str(Settings(root).build_db), read_only=True) as conn:
        return conn.sql("select date_day, kpi_name, value from kpis.kpi_daily").pl()


def compare(root: Path) -> pl.DataFrame:
    truth = pl.read_parquet(Settings(root).truth_dir / "kpi_daily.parquet").rename(
        {"date": "date_day", "kpi": "kpi_name", "value": "truth"}
    )
    joined = truth.join(kpis(root), on=["date_day", "kpi_name"], how="full", coalesce=True)
    return joined.filter((pl.col("truth") != pl.col("value")) | pl.col("truth").is_null() | pl.col("value").is_null())


def test_every_kpi_on_every_day_equals_the_truth(built: Path) -> None:
    mismatches = compare(built)
    assert mismatches.height == 0, mismatches.head(20)
    got = kpis(built)
    assert got.height == DAYS * len(load_registry().kpis)
    # and the comparison is not trivially about zeros: the business happened
    totals = dict(got.group_by("kpi_name").agg(pl.col("value").sum()).iter_rows())
    for kpi in (
        "active_customers",
        "new_customers",
        "churned_customers",
        "delinquent_customers",
        "mrr_usd",
        "bookings_usd",
        "billings_usd",
        "revenue_usd",
        "cash_collected_usd",
        "open_ar_usd",
        "mqls",
        "sqls",
        "pipeline_usd",
        "opportunities_won",
    ):
        assert totals[kpi] > 0, kpi


def test_late_journal_lines_and_reexported_payments_were_part_of_it(built: Path) -> None:
    with duckdb.connect(str(Settings(built).build_db), read_only=True) as conn:
        late = conn.execute("select count(*) from marts.fct_gl_entries where is_late_arrival").fetchone()[0]
        assert late > 0
    dirt = pl.read_parquet(Settings(built).truth_dir / "dirt_log.parquet")
    assert dirt.filter(pl.col("kind") == "held_back").height > 0

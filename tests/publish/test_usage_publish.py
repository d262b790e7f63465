"""The usage KPIs reach analysts through the gate: a daily run over a few simulated days with the product's
events publishes kpi_usage_daily equal to the simulator's truth, provisional until the late-arrival horizon;
a bad usage row fails the gate's usage check, nothing is published, and analysts keep the previous publish."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.egress.dashboard import build_dashboard
from dataops.ingest import events
from orchestration.lib.names import CHURN_MODEL_KEY
from registry.loader import load_registry
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import run_job

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("usage_published")]
START = dt.date(2025, 3, 3)
END = START + dt.timedelta(days=4)
NOT_INGESTION = (
    dg.AssetSelection.all()
    - dg.AssetSelection.groups("lake", "erp", "crm", "accounting", "product", "egress")
    - dg.AssetSelection.assets(CHURN_MODEL_KEY)
)


@pytest.fixture(scope="module")
def usage_published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five days of a small business with its product's events, through one daily run (do not modify).

    The events are landed first, as the event sensor's micro-batches would have landed them hour by hour (only
    its job lands events; the build reads what the lake holds)."""
    root = tmp_path_factory.mktemp("usage_published")
    settings = Settings(root)
    simulate(settings.sources_dir, END, SimConfig(seed=11, scale=0.03, start=START))
    assert events.ingest_events(settings).landed > 0
    assert run_job(root, START, END).success
    return root


def analyst(root: Path, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(Settings(root).analytics_db), read_only=True) as conn:
        return conn.sql(sql).pl()


def test_published_usage_kpis_equal_the_truth_and_are_provisional_until_the_horizon(usage_published: Path) -> None:
    query = "select date_day as date, kpi_name as kpi, value, is_final from kpis.kpi_usage_daily"
    got = analyst(usage_published, query)
    truth = pl.read_parquet(Settings(usage_published).truth_dir / "usage_kpi_daily.parquet")
    truth = truth.filter(pl.col("date").is_between(START, END))
    joined = truth.rename({"value": "truth"}).join(got, on=["date", "kpi"], how="full", coalesce=True)
    differ = (pl.col("truth") != pl.col("value")) | pl.col("truth").is_null() | pl.col("value").is_null()
    mismatches = joined.filter(differ)
    assert mismatches.height == 0, mismatches.sort("date", "kpi").head(20).to_dicts()
    assert got.filter(pl.col("kpi") == "daily_active_users")["value"].sum() > 0  # the product was used
    horizon = load_registry().usage.late_arrival_days
    final = dict(got.select("date", "is_final").unique().iter_rows())
    assert final == {START + dt.timedelta(days=d): d + horizon <= (END - START).days for d in range(5)}
    assert set(final.values()) == {True, False}


def test_a_bad_usage_row_blocks_publishing_and_analysts_keep_the_previous_publish(
    usage_published: Path, tmp_path: Path
) -> None:
    root = tmp_path / "case"
    shutil.copytree(usage_published, root)
    analytics = Settings(root).analytics_db
    before = hashlib.sha256(analytics.read_bytes()).hexdigest()
    with duckdb.connect(str(Settings(root).build_db)) as conn:  # a model defect: half a user
        conn.execute(
            "update kpis.kpi_usage_daily set value = value + 0.5 "
            "where kpi_name = 'daily_active_users' and date_day = ?",
            [END],
        )
    # the re-run's inputs are unchanged: dbt is not run again and the gate reads the table as it is
    result = run_job(root, START, END, selection=NOT_INGESTION)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.asset_check_key.name for e in failed] == ["usage_kpi_values_valid"]
    cases = failed[0].metadata["failure_cases_json"].value
    assert [(row["kpi_name"], row["date_day"]) for row in cases] == [("daily_active_users", str(END))]
    assert not [e for e in result.get_asset_materialization_events() if e.asset_key.path[0] == "publish"]
    assert hashlib.sha256(analytics.read_bytes()).hexdigest() == before  # byte for byte what analysts had


def test_the_dashboard_shows_the_published_usage_and_sessions(usage_published: Path, tmp_path: Path) -> None:
    """The published sessions mart equals the truth on every day; the dashboard's usage section shows the latest
    day's figures as published, provisional, with their business names (tests/egress/test_usage_dashboard.py
    checks the page in a browser)."""
    settings = Settings(usage_published)
    sessions = analyst(usage_published, "select * from marts.fct_usage_sessions_daily").rename({"date_day": "date"})
    truth = pl.read_parquet(settings.truth_dir / "usage_sessions_daily.parquet").filter(
        pl.col("date").is_between(START, END)
    )
    assert sessions.sort("date").equals(truth.select(sessions.columns).sort("date")) and sessions.height == 5
    page = build_dashboard(settings, tmp_path / "index.html")
    html = page.read_text()
    kpis = pl.read_parquet(settings.truth_dir / "usage_kpi_daily.parquet").filter(pl.col("date") == END)
    registry = load_registry()
    for kpi in ("daily_active_users", "monthly_active_users", "usage_events"):
        value = kpis.filter(pl.col("kpi") == kpi)["value"].item()
        label = next(k.label for k in registry.usage_kpis if k.name == kpi)
        tile = html.split(f'data-kpi="{kpi}">')[1].split("</div>")[0]
        assert f'<span class="name">{label}</span>' in tile and f'<span class="value">{value:,.0f}</span>' in tile
        assert ">provisional<" in tile
    tile = html.split('data-kpi="sessions">')[1].split("</div>")[0]
    assert f'<span class="value">{truth["sessions"][-1]:,}</span>' in tile

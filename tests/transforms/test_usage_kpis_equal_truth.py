"""The usage models (staged events, daily user and account activity, the customer health score, the usage KPIs)
equal the simulator's usage truth on the tiny scenario: every day, every KPI, every customer's score, exactly;
and with no events ever landed they still build, empty (the daily pipeline's `built` fixture has no product
events)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.ingest import events
from dataops.transform.runner import run_dbt
from registry.loader import load_registry
from source_systems.crm.server import start_in_thread
from tests.conftest import TINY_DAYS, TINY_START
from tests.pipeline import ingest_days

# a tiny simulation with events (about 15 s), every source ingested and the usage models with their upstream built
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("tiny")]

USAGE_MODELS = (
    "+kpi_usage_daily",
    "+int_usage_accounts_daily",
    "+int_usage_customers_daily",
    "+dim_customers",
    "+fct_usage_sessions_daily",
)


@pytest.fixture(scope="module")
def usage_built(tmp_path_factory: pytest.TempPathFactory, tiny_sources: Path) -> Settings:
    """The tiny simulation's events landed (one batch), its sources ingested, the usage models built (the health
    score reads the customers' states, so the transactional models they come from are built too)."""
    root = tmp_path_factory.mktemp("usage")
    (root / "sources").symlink_to(tiny_sources)
    settings = Settings(root)
    report = events.ingest_events(settings)
    assert report.landed > 0 and not report.mismatched
    end = TINY_START + dt.timedelta(days=TINY_DAYS - 1)
    with start_in_thread(settings.crm_db, rate_per_second=10_000.0, burst=10_000) as crm:
        ingest_days(settings, crm, TINY_START, end)
    build = ["build", "--indirect-selection", "cautious", "--select", *USAGE_MODELS]
    result = run_dbt(build, settings, window=(TINY_START.isoformat(), end.isoformat()))
    assert result.success, result.output[-3000:]
    return settings


def _table(settings: Settings, query: str) -> pl.DataFrame:
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        return conn.sql(query).pl()


def test_every_usage_kpi_on_every_day_equals_the_truth(usage_built: Settings, tiny_sources: Path) -> None:
    got = _table(usage_built, "select date_day as date, kpi_name as kpi, value from kpis.kpi_usage_daily")
    truth = pl.read_parquet(tiny_sources / "truth" / "usage_kpi_daily.parquet")
    joined = truth.rename({"value": "truth"}).join(got, on=["date", "kpi"], how="full", coalesce=True)
    mismatches = joined.filter(
        (pl.col("truth") != pl.col("value")) | pl.col("truth").is_null() | pl.col("value").is_null()
    )
    assert mismatches.height == 0, mismatches.sort("date", "kpi").head(20)
    registry = load_registry()
    expected = set(registry.usage_kpi_names)
    assert set(got["kpi"]) == expected
    assert got.height == TINY_DAYS * len(expected)
    # not trivially zeros: the product was used, by several customers, with every feature and seats
    totals = dict(got.group_by("kpi").agg(pl.col("value").sum()).iter_rows())
    assert all(totals[kpi] > 0 for kpi in expected), totals  # at_risk_customers too: some customer was at risk


def test_daily_user_and_account_activity_equal_the_truth(usage_built: Settings, tiny_sources: Path) -> None:
    users = _table(
        usage_built,
        "select date_day as date, user_id, account_id as account_ref, customer_key, usage_events as events "
        "from intermediate.int_usage_users_daily",
    )
    truth = pl.read_parquet(tiny_sources / "truth" / "usage_users_daily.parquet")
    assert users.sort("date", "user_id").equals(truth.sort("date", "user_id").cast({"events": pl.Int64}))
    accounts = _table(
        usage_built,
        "select date_day as date, account_id as account_ref, customer_key, active_users, usage_events as events "
        "from intermediate.int_usage_accounts_daily",
    )
    truth_accounts = pl.read_parquet(tiny_sources / "truth" / "usage_accounts_daily.parquet")
    cast = {"active_users": pl.Int64, "events": pl.Int64}
    assert accounts.sort("date", "account_ref").cast(cast).equals(truth_accounts.sort("date", "account_ref").cast(cast))


def test_daily_customer_activity_equals_the_truth(usage_built: Settings, tiny_sources: Path) -> None:
    """Customers by ultimate parent: the day's users and events and the monthly window's users."""
    got = _table(
        usage_built,
        "select date_day as date, customer_key, active_users, usage_events as events, monthly_active_users "
        "from intermediate.int_usage_customers_daily",
    )
    columns = ["date", "customer_key", "active_users", "events", "monthly_active_users"]
    # the truth keeps a customer's day while it has a contract, events or seats; the model while it has usage
    truth = pl.read_parquet(tiny_sources / "truth" / "usage_customers_daily.parquet").select(columns)
    truth = truth.filter(pl.col("monthly_active_users") > 0).cast(dict.fromkeys(columns[2:], pl.Int64))
    joined = got.join(truth, on=["date", "customer_key"], how="inner", suffix="_truth")
    for column in columns[2:]:
        assert joined.filter(pl.col(column) != pl.col(f"{column}_truth")).height == 0, column
    used = truth.filter(pl.col("events") > 0).select("date", "customer_key")
    assert used.join(got, on=["date", "customer_key"], how="anti").height == 0
    assert joined.height >= used.height > 0


def test_usage_sessions_and_their_daily_lengths_equal_the_truth(usage_built: Settings, tiny_sources: Path) -> None:
    """Every session (30-minute inactivity, within a day) with its user, account, customer, start, end and events;
    per day the sessions, their users and events, and the average and median session length."""
    got = _table(
        usage_built,
        "select date_day as date, user_id, account_id as account_ref, customer_key, session_start, session_end, "
        "length_ms, usage_events as events from intermediate.int_usage_sessions",
    )
    truth = pl.read_parquet(tiny_sources / "truth" / "usage_sessions.parquet")
    times = {"session_start": pl.Datetime("ms"), "session_end": pl.Datetime("ms"), "length_ms": pl.Int64}
    assert got.cast(times).sort("user_id", "session_start").equals(truth.cast(times).sort("user_id", "session_start"))
    daily = _table(usage_built, "select * from marts.fct_usage_sessions_daily").rename({"date_day": "date"})
    truth_daily = pl.read_parquet(tiny_sources / "truth" / "usage_sessions_daily.parquet")
    assert daily.sort("date").equals(truth_daily.select(daily.columns).sort("date"))
    assert daily.height == TINY_DAYS and (daily["sessions"] > daily["session_users"]).any()


HEALTH = [
    "events_recent",
    "events_prior",
    "monthly_active_users",
    "seats",
    "is_delinquent",
    "has_paused_contract",
    "health_score",
    "is_at_risk",
]


def test_every_customers_health_score_on_every_day_equals_the_truth(usage_built: Settings, tiny_sources: Path) -> None:
    """Scored while a customer has a live or paused contract: the trend, seats, facts, score and risk."""
    got = _table(
        usage_built,
        f"select date_day as date, customer_id as customer_key, {', '.join(HEALTH)} "
        "from marts.fct_customer_health_daily",
    )
    truth = pl.read_parquet(tiny_sources / "truth" / "usage_customers_daily.parquet")
    truth = truth.filter(pl.col("health_score").is_not_null()).select("date", "customer_key", *HEALTH)
    joined = truth.join(got, on=["date", "customer_key"], how="full", coalesce=True, suffix="_got")
    for column in HEALTH:
        differ = joined.filter(pl.col(column).cast(pl.Int64).ne_missing(pl.col(f"{column}_got").cast(pl.Int64)))
        assert differ.height == 0, (column, differ.head(5).to_dicts())
    # the usage rules and a paused contract held somewhere, and some customer fell below the threshold (the tiny
    # scenario has no delinquent customer: that rule is the marts' flag, checked equal above)
    rules = got.select(
        (pl.col("events_recent") * 2 < pl.col("events_prior")).any(),
        (pl.col("monthly_active_users") * 2 < pl.col("seats")).any(),
        pl.col("has_paused_contract").any(),
        pl.col("is_at_risk").any(),
    )
    assert all(rules.row(0)), rules


def test_the_customer_360_carries_each_customers_usage(usage_built: Settings, tiny_sources: Path) -> None:
    """dim_customers: the last day a customer's users used the product, and its monthly active users on the
    last day the lake holds, as the truth has them (0 and null for a customer without usage)."""
    got = _table(usage_built, "select customer_id, last_used_date, monthly_active_users from marts.dim_customers")
    truth = pl.read_parquet(tiny_sources / "truth" / "usage_customers_daily.parquet")
    last_day = truth.filter(pl.col("events") > 0)["date"].max()
    expected = (
        truth.group_by("customer_key")
        .agg(
            last_used_date=pl.col("date").filter(pl.col("events") > 0).max(),
            monthly_active_users=pl.col("monthly_active_users").filter(pl.col("date") == last_day).first(),
        )
        .rename({"customer_key": "customer_id"})
    )
    joined = got.join(expected, on="customer_id", how="left", suffix="_truth").with_columns(
        pl.col("monthly_active_users_truth").fill_null(0)
    )
    for column in ("last_used_date", "monthly_active_users"):
        differ = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_truth").cast(joined[column].dtype)))
        assert differ.height == 0, (column, differ.head(5).to_dicts())
    used = joined.filter(pl.col("monthly_active_users") > 0)
    assert used.height > 0 and joined.filter(pl.col("last_used_date").is_null()).height > 0  # with and without


def test_staged_events_build_empty_and_typed_before_any_event_lands(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    settings.build_db.parent.mkdir(parents=True)
    result = run_dbt(["build", "--select", "stg_product__events", "stg_product__event_devices"], settings)
    assert result.success, result.output[-3000:]
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        for model in ("stg_product__events", "stg_product__event_devices"):
            assert conn.execute(f"select count(*) from staging.{model}").fetchone() == (0,)
        types = dict(
            conn.execute("select column_name, column_type from (describe staging.stg_product__events)").fetchall()
        )
    assert types["event_time"] == "TIMESTAMP" and types["event_date"] == "DATE" and types["is_excluded"] == "BOOLEAN"

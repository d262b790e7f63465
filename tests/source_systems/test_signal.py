"""A world with signal: churn follows a latent health that shows, with noise, in what the systems record
weeks before the cancellation request; some customers churn with no warning; the truth keeps the latent
health, the risk and the actual churn dates.

Statistical, over many customers, with margins wide enough for any seed (the effects are large)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from source_systems.simulator.state import State

pytestmark = pytest.mark.xdist_group("signal")

START = dt.date(2025, 1, 6)  # a Monday: three-week windows hold the same weekdays


@pytest.fixture(scope="module")
def business(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 160 customers over 300 days, without the event stream."""
    root = tmp_path_factory.mktemp("signal") / "sources"
    simulate(root, START + dt.timedelta(days=299), SimConfig(seed=13, scale=0.4, start=START, product_events=False))
    return root


@pytest.fixture(scope="module")
def with_usage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 80 customers over 120 days, with the event stream."""
    root = tmp_path_factory.mktemp("signal-usage") / "sources"
    simulate(root, START + dt.timedelta(days=119), SimConfig(seed=17, scale=0.2, start=START))
    return root


def _state(root: Path) -> State:
    return State.load(root / "_state")[0]


def _health(state: State) -> pl.DataFrame:
    return state.table("health_daily")


def test_cancellations_follow_low_health_and_some_come_without_warning(business: Path) -> None:
    state = _state(business)
    causes = state.table("churn_causes").join(state.table("contracts").select("contract", "customer"), on="contract")
    at_cancel = causes.join(_health(state), on=["day", "customer"])
    health_caused = at_cancel.filter(pl.col("cause") == 0)
    assert health_caused.height >= 10
    everyone = _health(state)["h"].mean()
    assert health_caused["h"].mean() < everyone - 0.25  # type: ignore[operator]
    silent = at_cancel.filter(pl.col("cause") == 1)
    assert silent.height >= 1
    assert silent["h"].mean() > health_caused["h"].mean() + 0.15  # type: ignore[operator]


def test_the_decline_starts_weeks_before_the_request(business: Path) -> None:
    state = _state(business)
    health = _health(state)
    requests = (
        state.table("churn_causes")
        .filter((pl.col("cause") == 0) & (pl.col("to_status") == 3) & (pl.col("day") >= 60))
        .join(state.table("contracts").select("contract", "customer"), on="contract")
    )
    assert requests.height >= 5
    drops = []
    for day, customer in requests.select("day", "customer").iter_rows():
        path = health.filter(pl.col("customer") == customer).sort("day")
        before = dict(zip(path["day"], path["h"], strict=True))
        if day - 42 in before:
            drops.append(before[day - 42] - before[day - 1])
    assert np.mean(drops) > 0.1  # six weeks before the request, health was clearly higher


def test_poor_health_shows_in_late_partial_or_missing_payments(business: Path) -> None:
    state = _state(business)
    invoices = state.table("invoices").filter(pl.col("issue_day") <= state.last_day - 150)
    paid = (
        state.table("settlements")
        .filter(pl.col("day") <= pl.col("day").max())
        .sort("day")
        .group_by("invoice")
        .agg(pl.col("amount").cum_sum().alias("paid"), pl.col("day"))
        .explode("paid", "day")
    )
    settled = (
        paid.join(invoices.select("invoice", "amount"), on="invoice")
        .filter(pl.col("paid") >= pl.col("amount"))
        .group_by("invoice")
        .agg(settled_day=pl.col("day").min())
    )
    table = (
        invoices.join(settled, on="invoice", how="left")
        .join(_health(state), left_on=["issue_day", "customer"], right_on=["day", "customer"])
        .with_columns(trouble=pl.col("settled_day").is_null() | (pl.col("settled_day") > pl.col("due_day")))
    )
    poor = table.filter(pl.col("h") < 0.3)["trouble"].mean()
    good = table.filter(pl.col("h") > 0.6)["trouble"].mean()
    assert table.filter(pl.col("h") < 0.3).height >= 20
    assert poor > good + 0.25  # type: ignore[operator]


def test_poor_health_shows_in_pauses(business: Path) -> None:
    state = _state(business)
    pauses = (
        state.table("status_changes")
        .filter((pl.col("to_status") == 2) & (pl.col("day") >= 0))
        .join(state.table("contracts").select("contract", "customer"), on="contract")
        .join(_health(state), on=["day", "customer"])
    )
    assert pauses.height >= 5
    assert pauses["h"].mean() < _health(state)["h"].mean() - 0.1  # type: ignore[operator]


def test_the_truth_keeps_latent_risk_and_churn_dates(business: Path) -> None:
    truth = business / "truth"
    latent = pl.read_parquet(truth / "customer_latent_health.parquet")
    states = pl.read_parquet(truth / "customer_states_daily.parquet").sort("customer_key", "date")
    churned = (
        states.with_columns(prev=pl.col("state").shift(1).over("customer_key"))
        .filter((pl.col("state") == "churned") & (pl.col("prev") != "churned"))
        .select("customer_key", churn_date="date")
    )
    assert churned.height > 10
    labelled = latent.filter(pl.col("churns_within_90_days").is_not_null())
    assert labelled["churns_within_90_days"].any() and not labelled["churns_within_90_days"].all()
    check = labelled.join(churned, on="customer_key", how="left").with_columns(
        within=(pl.col("churn_date") > pl.col("date")) & (pl.col("churn_date") <= pl.col("date") + pl.duration(days=90))
    )
    expected = check.group_by("customer_key", "date").agg(pl.col("within").fill_null(False).any())
    got = labelled.join(expected, on=["customer_key", "date"])
    assert (got["churns_within_90_days"] == got["within"]).all()
    # the risk the truth keeps is the hazard health implies: higher ahead of the churns than elsewhere
    risk = labelled.group_by("churns_within_90_days").agg(pl.col("cancel_hazard").mean())
    by = dict(risk.iter_rows())
    assert by[True] > 3 * by[False]
    events = pl.read_parquet(truth / "churn_events.parquet")
    assert set(events["cause"]) >= {"health", "silent", "scripted"}
    assert set(events["to_status"]) == {"cancellation_requested", "ended"}


def test_usage_and_seats_decline_before_the_request(with_usage: Path) -> None:
    """The last two weeks before a health-driven cancellation request against two weeks a month earlier."""
    truth = with_usage / "truth"
    customers = pl.read_parquet(truth / "usage_customers_daily.parquet")
    events = pl.read_parquet(truth / "churn_events.parquet").filter(
        (pl.col("cause") == "health") & (pl.col("to_status") == "cancellation_requested")
    )

    def before(key: str, day: dt.date) -> tuple[float, bool] | None:
        rows = customers.filter(
            (pl.col("customer_key") == key) & (pl.col("date") < day) & (pl.col("date") >= day - dt.timedelta(days=42))
        )
        earlier = rows.filter(pl.col("date") < day - dt.timedelta(days=28))["events"].sum()
        if rows.height < 42 or earlier == 0:
            return None
        recent = rows.filter(pl.col("date") >= day - dt.timedelta(days=14))["events"].sum()
        return recent / earlier, rows.sort("date")["seats"][-1] < rows["seats"].max()

    requests = events.group_by("customer_key").agg(pl.col("date").min())
    churning = [x for x in (before(k, d) for k, d in requests.iter_rows()) if x]
    day = START + dt.timedelta(days=100)
    others = customers.filter(~pl.col("customer_key").is_in(events["customer_key"].implode()))["customer_key"]
    steady = [x for x in (before(k, day) for k in others.unique().to_list()) if x]
    assert len(churning) >= 3 and len(steady) >= 20
    assert np.median([r for r, _ in churning]) < 0.6  # usage fell by almost half or more
    assert np.median([r for r, _ in steady]) > 0.8
    assert np.mean([s for _, s in churning]) > np.mean([s for _, s in steady]) + 0.3  # seats given up


def test_usage_ramps_up_after_go_live(with_usage: Path) -> None:
    truth = with_usage / "truth"
    states = pl.read_parquet(truth / "customer_states_daily.parquet").sort("customer_key", "date")
    new = (
        states.with_columns(prev=pl.col("state").shift(1).over("customer_key"))
        .filter((pl.col("state") == "active") & (pl.col("prev") == "onboarding") & (pl.col("date") > START))
        .select("customer_key", live="date")
    )
    customers = pl.read_parquet(truth / "usage_customers_daily.parquet").join(new, on="customer_key")
    customers = customers.with_columns(week=(pl.col("date") - pl.col("live")).dt.total_days() // 7)
    weekly = customers.filter(pl.col("week").is_in([0, 5])).group_by("customer_key", "week").agg(pl.col("events").sum())
    both = weekly.pivot("week", index="customer_key", values="events").drop_nulls()
    assert both.height >= 4
    assert both["0"].sum() < 0.5 * both["5"].sum()

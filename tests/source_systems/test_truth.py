"""The truth, checked by hand on a tiny business constructed explicitly (not simulated).

Ten days, three customers, USD and EUR (EUR at 1.10 USD), delinquency after 3 days past due:
- customer 0 (USD): contract K1 mrr 1,000.00 signed d1, live d3, paused d6, resumed d8.
- customer 1 (EUR): contract K2 mrr 500.00 signed d2, live d4, cancellation requested d5 (still live),
  ended d7; its invoice of EUR 200.00 (issued d1, due d2) is never paid: delinquent from d6.
- customer 2: never signs (prospect).
- invoice USD 1,000.00 issued d2: 400.00 paid d3; 600.00 paid d5 but held back until a re-export on d7.
- revenue USD 1,000.00 on d2; a late EUR 100.00 line for d4 arrives d8; EUR 123.45 on d9 (rounding).
- opportunities: USD 5,000.00 open d0, won d1; EUR 1,000.00 open from d2.
- leads: one person with two business leads qualifying d2 and d1 (counted once, on d1) and accepted d3;
  a free-mail person with score 90 (never an MQL, even though accepted); a business lead scoring 59.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from registry.loader import load_registry
from source_systems.simulator.state import State, frame
from source_systems.simulator.truth import compute_truth

START = dt.date(2025, 1, 1)
USD, EUR = 0, 1
SIGNED, LIVE, PAUSED, CANCEL, ENDED = range(5)


def _state() -> State:
    s = State(last_day=9)
    s.append(
        "fx",
        frame(
            "fx",
            day=[d for d in range(10) for _ in range(3)],
            currency=[0, 1, 2] * 10,
            rate_micro=[1_000_000, 1_100_000, 1_250_000] * 10,
        ),
    )
    s.append(
        "contracts",
        frame(
            "contracts",
            contract=[1, 2],
            bill=[0, 1],
            customer=[0, 1],
            currency=[USD, EUR],
            product=[0, 0],
            services_product=[3, 3],
            mrr=[100_000, 50_000],
            services=[0, 0],
            term=[12, 12],
            tcv=[1_200_000, 600_000],
            signed_day=[1, 2],
            live_day=[3, 4],
            end_day=[-1, 7],
            status=[LIVE, ENDED],
        ),
    )
    s.append(
        "status_changes",
        frame(
            "status_changes",
            contract=[1, 1, 1, 1, 2, 2, 2, 2],
            day=[1, 3, 6, 8, 2, 4, 5, 7],
            from_status=[-1, SIGNED, LIVE, PAUSED, -1, SIGNED, LIVE, CANCEL],
            to_status=[SIGNED, LIVE, PAUSED, LIVE, SIGNED, LIVE, CANCEL, ENDED],
        ),
    )
    s.append(
        "invoices",
        frame(
            "invoices",
            invoice=[1, 2],
            contract=[1, 2],
            bill=[0, 1],
            customer=[0, 1],
            currency=[USD, EUR],
            amount=[100_000, 20_000],
            issue_day=[2, 1],
            due_day=[4, 2],
            kind=[0, 0],
        ),
    )
    s.append(
        "settlements",
        frame(
            "settlements",
            invoice=[1, 1],
            day=[3, 5],
            amount=[40_000, 60_000],
            currency=[USD, USD],
            kind=[0, 0],
            known_day=[3, 7],
        ),
    )
    s.append(
        "revenue",
        frame(
            "revenue", day=[2, 4, 9], known_day=[2, 8, 9], currency=[USD, EUR, EUR], amount=[100_000, 10_000, 12_345]
        ),
    )
    s.append(
        "opps",
        frame(
            "opps",
            opp=[1, 2],
            account=[0, 1],
            currency=[USD, EUR],
            amount=[500_000, 100_000],
            created_day=[0, 2],
            close_day=[1, 30],
            won=[True, False],
            product=[0, 0],
            services_product=[3, 3],
            mrr=[0, 0],
            services=[0, 0],
            term=[12, 12],
        ),
    )
    s.append("opp_closes", frame("opp_closes", opp=[1], day=[1], won=[True]))
    s.append(
        "leads",
        frame(
            "leads",
            lead=[1, 2, 3, 4],
            person=[1, 1, 2, 3],
            domain=["acme.com", "acme.com", "gmail.com", "beta.io"],
            created_day=[0, 1, 0, 0],
        ),
    )
    s.append("lead_scores", frame("lead_scores", lead=[1, 1, 2, 3, 4], day=[0, 2, 1, 0, 0], score=[30, 70, 65, 90, 59]))
    s.append("lead_accepts", frame("lead_accepts", lead=[1, 3], day=[3, 1]))
    return s


@pytest.fixture(scope="module")
def truth() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    registry = load_registry().with_overrides(delinquency_days=3)
    t = compute_truth(_state(), registry, START, 3, pl.Series(["A", "B", "C"]).to_numpy())
    return t.kpi_daily, t.kpi_daily_history, t.customer_states


def _series(kpi_daily: pl.DataFrame, kpi: str) -> list[Decimal]:
    return kpi_daily.filter(pl.col("kpi") == kpi).sort("date")["value"].to_list()


def D(*values: str | int) -> list[Decimal]:
    return [Decimal(str(v)).quantize(Decimal("0.01")) for v in values]


def test_customer_states_by_hand(truth: tuple[pl.DataFrame, ...]) -> None:
    states = truth[2].sort("customer_key", "date")
    by_customer = {k: g["state"].to_list() for (k,), g in states.group_by("customer_key", maintain_order=True)}
    assert by_customer["A"] == ["prospect"] + ["onboarding"] * 2 + ["active"] * 3 + ["paused"] * 2 + ["active"] * 2
    assert by_customer["B"] == ["prospect"] * 2 + ["onboarding"] * 2 + ["active"] * 3 + ["churned"] * 3
    assert by_customer["C"] == ["prospect"] * 10
    delinquent = states.filter(pl.col("is_delinquent")).group_by("customer_key").agg(pl.col("date").min())
    assert delinquent.rows() == [("B", START + dt.timedelta(days=6))]


def test_customer_counts_by_hand(truth: tuple[pl.DataFrame, ...]) -> None:
    daily = truth[0]
    assert _series(daily, "active_customers") == D(0, 0, 0, 1, 2, 2, 1, 0, 1, 1)
    assert _series(daily, "new_customers") == D(0, 0, 0, 1, 1, 0, 0, 0, 0, 0)  # resuming from paused is not new
    assert _series(daily, "churned_customers") == D(0, 0, 0, 0, 0, 0, 0, 1, 0, 0)
    assert _series(daily, "delinquent_customers") == D(0, 0, 0, 0, 0, 0, 1, 1, 1, 1)


def test_money_by_hand(truth: tuple[pl.DataFrame, ...]) -> None:
    daily = truth[0]
    assert _series(daily, "mrr_usd") == D(0, 0, 0, 1000, 1550, 1550, 550, 0, 1000, 1000)
    assert _series(daily, "arr_usd") == D(0, 0, 0, 12000, 18600, 18600, 6600, 0, 12000, 12000)
    assert _series(daily, "bookings_usd") == D(0, 12000, 6600, 0, 0, 0, 0, 0, 0, 0)
    assert _series(daily, "billings_usd") == D(0, 220, 1000, 0, 0, 0, 0, 0, 0, 0)
    # EUR 123.45 x 1.10 = 135.795 -> 135.80 (half away from zero)
    assert _series(daily, "revenue_usd") == D(0, 0, 1000, 0, 110, 0, 0, 0, 0, "135.80")
    assert _series(daily, "cash_collected_usd") == D(0, 0, 0, 400, 0, 600, 0, 0, 0, 0)
    assert _series(daily, "open_ar_usd") == D(0, 220, 1220, 820, 820, 220, 220, 220, 220, 220)
    assert _series(daily, "pipeline_usd") == D(5000, 0, 1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100)
    assert _series(daily, "opportunities_won") == D(0, 1, 0, 0, 0, 0, 0, 0, 0, 0)


def test_marketing_by_hand(truth: tuple[pl.DataFrame, ...]) -> None:
    daily = truth[0]
    assert _series(daily, "mqls") == D(0, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    assert _series(daily, "sqls") == D(0, 0, 0, 1, 0, 0, 0, 0, 0, 0)


def test_history_keeps_what_was_known_when(truth: tuple[pl.DataFrame, ...]) -> None:
    history = truth[1]

    def versions(kpi: str, day: int) -> list[tuple[dt.date, Decimal]]:
        rows = history.filter((pl.col("kpi") == kpi) & (pl.col("date") == START + dt.timedelta(days=day)))
        return sorted(rows.select("known_at", "value").iter_rows())

    d = [START + dt.timedelta(days=i) for i in range(10)]
    assert versions("cash_collected_usd", 5) == [(d[5], Decimal("0.00")), (d[7], Decimal("600.00"))]
    assert versions("open_ar_usd", 5) == [(d[5], Decimal("820.00")), (d[7], Decimal("220.00"))]
    assert versions("open_ar_usd", 6) == [(d[6], Decimal("820.00")), (d[7], Decimal("220.00"))]
    assert versions("open_ar_usd", 7) == [(d[7], Decimal("220.00"))]
    assert versions("revenue_usd", 4) == [(d[4], Decimal("0.00")), (d[8], Decimal("110.00"))]
    assert versions("mrr_usd", 4) == [(d[4], Decimal("1550.00"))]
    # the latest version of every (date, kpi) is the truth
    latest = history.sort("known_at").group_by("date", "kpi").agg(pl.col("value").last())
    joined = latest.join(truth[0], on=["date", "kpi"], suffix="_truth")
    assert joined.height == truth[0].height
    assert (joined["value"] == joined["value_truth"]).all()


def test_the_delinquency_threshold_comes_from_the_registry() -> None:
    strict = load_registry().with_overrides(delinquency_days=1)
    daily = compute_truth(_state(), strict, START, 3, pl.Series(["A", "B", "C"]).to_numpy()).kpi_daily
    assert _series(daily, "delinquent_customers") == D(0, 0, 0, 0, 1, 1, 1, 1, 1, 1)

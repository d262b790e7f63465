"""The usage KPIs, checked by hand on a tiny ledger constructed explicitly (not simulated).

Ten days, windows shortened (weekly 2 days, monthly and adoption 3, trend 2, horizon 48 hours):
- user 1 (customer 0): day 0 three page views; day 1 two reports created; day 2 a search that arrives two
  days late; day 5 a page view.
- user 2 (customer 0): day 1 five page views; day 3 a comment.
- user 3 (customer 1): day 2 four page views, and one more that arrives a day late.
- seats: customer 0 two from day 0 and one given up on day 4 (known on day 5); customer 1 one from day 0.
- customer 1 is delinquent from day 6; customer 0 is paused on day 8; customer 2 never buys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from registry.loader import HealthScore, load_registry
from source_systems.simulator.state import State, frame
from source_systems.simulator.usage_truth import UsageTruth, compute_usage_truth, window_min

START = dt.date(2025, 1, 1)
PAGE, SEARCH, REPORT, COMMENT = 0, 1, 3, 9
ACTIVE, PAUSED, PROSPECT = 2, 3, 0


def _state() -> State:
    s = State(last_day=9)
    s.append(
        "product_users",
        frame(
            "product_users",
            user=[1, 2, 3],
            account=[0, 1, 2],
            customer=[0, 0, 1],
            created_day=[0, 0, 0],
            seated=[True] * 3,
            stitched_known=[0] * 3,
        ),
    )
    s.append(
        "usage",
        frame(
            "usage",
            day=[0, 1, 2, 5, 1, 3, 2, 2],
            known_day=[0, 1, 4, 5, 1, 3, 2, 3],
            user=[1, 1, 1, 1, 2, 2, 3, 3],
            event_type=[PAGE, REPORT, SEARCH, PAGE, PAGE, COMMENT, PAGE, PAGE],
            events=[3, 2, 1, 1, 5, 1, 4, 1],
        ),
    )
    s.append("seats", frame("seats", day=[0, 0, 4], known_day=[0, 0, 5], customer=[0, 1, 0], delta=[2, 1, -1]))
    return s


@pytest.fixture(scope="module")
def truth() -> UsageTruth:
    return _compute(_state())


def _compute(state: State) -> UsageTruth:
    base = load_registry()
    usage = replace(
        base.usage,
        late_arrival_hours=48,
        weekly_days=2,
        monthly_days=3,
        adoption_window_days=3,
        health_score=replace(HealthScore(), trend_days=2),
    )
    registry = base.with_overrides(usage=usage)
    states = np.full((3, 10), ACTIVE)
    states[0, 8] = PAUSED
    states[2] = PROSPECT
    delinquent = np.zeros((3, 10), bool)
    delinquent[1, 6:] = True
    paused = np.zeros((3, 10), bool)
    paused[0, 8] = True
    keys = np.array(["A", "B", "C"])
    accounts = np.array(["acc0", "acc1", "acc2"])
    return compute_usage_truth(state, registry, START, 3, keys, accounts, states, delinquent, paused)


def _series(kpis: pl.DataFrame, kpi: str) -> list[Decimal]:
    return kpis.filter(pl.col("kpi") == kpi).sort("date")["value"].to_list()


def D(*values: str | int) -> list[Decimal]:
    return [Decimal(str(v)).quantize(Decimal("0.01")) for v in values]


def test_active_users(truth: UsageTruth) -> None:
    daily = truth.kpi_daily
    assert _series(daily, "usage_events") == D(3, 7, 6, 1, 0, 1, 0, 0, 0, 0)
    assert _series(daily, "daily_active_users") == D(1, 2, 2, 1, 0, 1, 0, 0, 0, 0)
    assert _series(daily, "weekly_active_users") == D(1, 2, 3, 3, 1, 1, 1, 0, 0, 0)
    assert _series(daily, "monthly_active_users") == D(1, 2, 3, 3, 3, 2, 1, 1, 0, 0)
    assert _series(daily, "usage_active_customers") == D(1, 1, 2, 2, 2, 1, 1, 1, 0, 0)


def test_feature_adoption_among_customers_active_by_usage(truth: UsageTruth) -> None:
    daily = truth.kpi_daily
    assert _series(daily, "feature_adoption_reports") == D(0, 100, 50, 50, 0, 0, 0, 0, 0, 0)
    assert _series(daily, "feature_adoption_collaboration") == D(0, 0, 0, 50, 50, 100, 0, 0, 0, 0)
    assert _series(daily, "feature_adoption_workflows") == D(*[0] * 10)


def test_usage_per_seat_rounds_half_away_from_zero(truth: UsageTruth) -> None:
    # 7 / 3 = 2.333.. -> 2.33; 1 / 3 -> 0.33; seat given up on day 4
    assert _series(truth.kpi_daily, "usage_per_seat") == D("1.00", "2.33", "2.00", "0.33", 0, "0.50", 0, 0, 0, 0)


def test_health_score_and_customers_at_risk(truth: UsageTruth) -> None:
    assert _series(truth.kpi_daily, "at_risk_customers") == D(0, 0, 0, 0, 0, 1, 0, 0, 1, 0)
    customers = truth.customers_daily
    score = {(r["customer_key"], (r["date"] - START).days): r["health_score"] for r in customers.iter_rows(named=True)}
    assert [score[("A", d)] for d in range(10)] == [100, 100, 100, 60, 60, 100, 100, 60, 10, 80]
    # before its first use (day 2) B has a seat and no active user: low seat use
    assert [score[("B", d)] for d in range(10)] == [80, 80, 100, 100, 60, 40, 55, 55, 55, 55]
    assert customers.filter(pl.col("customer_key") == "C").height == 0  # no contract, no use


def test_history_restates_the_days_late_events_belong_to(truth: UsageTruth) -> None:
    history = truth.kpi_daily_history

    def versions(kpi: str, day: int) -> list[tuple[int, Decimal]]:
        rows = history.filter((pl.col("kpi") == kpi) & (pl.col("date") == START + dt.timedelta(days=day)))
        return sorted(((k - START).days, v) for k, v in rows.select("known_at", "value").iter_rows())

    assert versions("usage_events", 2) == [(2, Decimal("4.00")), (3, Decimal("5.00")), (4, Decimal("6.00"))]
    assert versions("daily_active_users", 2) == [(2, Decimal("1.00")), (4, Decimal("2.00"))]
    assert versions("usage_per_seat", 2) == [(2, Decimal("1.33")), (3, Decimal("1.67")), (4, Decimal("2.00"))]
    assert versions("usage_events", 5) == [(5, Decimal("1.00"))]
    assert versions("usage_per_seat", 4) == [(4, Decimal("0.00"))]  # 0 events either way


def test_per_user_and_account(truth: UsageTruth) -> None:
    users = truth.users_daily.filter(pl.col("date") == START + dt.timedelta(days=2)).sort("user_id")
    assert users.select("user_id", "account_ref", "customer_key", "events").rows() == [
        ("003000000001", "acc0", "A", 1),
        ("003000000003", "acc2", "B", 5),
    ]
    accounts = truth.accounts_daily.filter(pl.col("date") == START + dt.timedelta(days=1)).sort("account_ref")
    assert accounts.select("account_ref", "active_users", "events").rows() == [("acc0", 1, 2), ("acc1", 1, 5)]


def test_a_ledger_row_past_the_horizon_is_refused() -> None:
    state = _state()
    state.append("usage", frame("usage", day=[1], known_day=[5], user=[1], event_type=[PAGE], events=[1]))
    registry = load_registry()
    states = np.full((3, 10), ACTIVE)
    flags = np.zeros((3, 10), bool)
    keys = np.array(["A", "B", "C"])
    with pytest.raises(ValueError, match="horizon"):
        compute_usage_truth(
            state, registry.with_overrides(usage=replace(registry.usage, late_arrival_hours=48)), START, 3, keys,
            keys, states, flags, flags,
        )  # fmt: skip


@pytest.mark.parametrize("width", [1, 2, 3, 5, 7, 28])
def test_window_min_is_the_minimum_over_the_window(width: int) -> None:
    x = np.random.default_rng(width).integers(0, 100, size=(4, 40)).astype(np.int32)
    expected = np.array([[x[r, max(0, d - width + 1) : d + 1].min() for d in range(40)] for r in range(4)])
    assert (window_min(x, width) == expected).all()


def _ms(hours: int, minutes: int, seconds: float = 0) -> int:
    return int((hours * 3600 + minutes * 60 + seconds) * 1000)


def test_sessions_by_hand() -> None:
    """Runs of usage events (simulator/events.py) merged into sessions of a 30-minute gap, as known on the last day.

    User 1, day 2: 10:00-10:05 (3 events, known that day); 10:35-10:36 (2, known a day later: exactly 30 minutes
    after, the same session); 11:06:00.5 (1: 30 minutes and half a second after the latest end, the next session);
    12:00 (known on day 10, after the last day: not known yet). User 3, day 2: one event at 09:00. User 2, day 5:
    two sessions of 10 ms and 0 ms, whose average and median of 5 ms round half up to 0.01 s.
    """
    state = _state()
    state.append(
        "usage_runs",
        frame(
            "usage_runs",
            day=[2, 2, 2, 2, 2, 5, 5],
            known_day=[2, 3, 2, 10, 2, 5, 5],
            user=[1, 1, 1, 1, 3, 2, 2],
            first_ms=[_ms(10, 0), _ms(10, 35), _ms(11, 6, 0.5), _ms(12, 0), _ms(9, 0), _ms(8, 0), _ms(9, 0)],
            last_ms=[_ms(10, 5), _ms(10, 36), _ms(11, 6, 0.5), _ms(12, 0), _ms(9, 0), _ms(8, 0, 0.01), _ms(9, 0)],
            events=[3, 2, 1, 4, 1, 2, 1],
        ),
    )
    truth = _compute(state)
    day2 = dt.datetime(2025, 1, 3)
    day5 = dt.datetime(2025, 1, 6)
    got = truth.sessions.select("user_id", "account_ref", "session_start", "session_end", "length_ms", "events")
    assert got.rows() == [
        (
            "003000000001",
            "acc0",
            day2 + dt.timedelta(hours=10),
            day2 + dt.timedelta(hours=10, minutes=36),
            2_160_000,
            5,
        ),
        (
            "003000000001",
            "acc0",
            day2 + dt.timedelta(milliseconds=_ms(11, 6, 0.5)),
            day2 + dt.timedelta(milliseconds=_ms(11, 6, 0.5)),
            0,
            1,
        ),
        (
            "003000000002",
            "acc1",
            day5 + dt.timedelta(hours=8),
            day5 + dt.timedelta(milliseconds=_ms(8, 0, 0.01)),
            10,
            2,
        ),
        ("003000000002", "acc1", day5 + dt.timedelta(hours=9), day5 + dt.timedelta(hours=9), 0, 1),
        ("003000000003", "acc2", day2 + dt.timedelta(hours=9), day2 + dt.timedelta(hours=9), 0, 1),
    ]
    assert truth.sessions["customer_key"].to_list() == ["A", "A", "A", "A", "B"]
    assert truth.sessions_daily.rows() == [
        (dt.date(2025, 1, 3), 3, 2, 7, Decimal("720.00"), Decimal("0.00")),
        (dt.date(2025, 1, 6), 2, 1, 3, Decimal("0.01"), Decimal("0.01")),
    ]

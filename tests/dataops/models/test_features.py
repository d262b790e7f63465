"""Point-in-time features: a row the warehouse learned after the scoring date cannot change a feature."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dataops.models.features import FEATURE_SETS, FeatureSet, available_sets, features_on
from dataops.models.labels import label
from tests.dataops.models.marts import D0, day, marts, with_rows

DELINQUENCY_DAYS = 60

# Rows the warehouse learns after D0, each of which changes some feature once it is known.
FUTURE_ROWS: dict[str, list[tuple[object, ...]]] = {
    # a cancellation request and a pause recorded after the scoring date
    "contract_events": [("A", "K1", "cancellation_requested", day(5)), ("B", "K2", "paused", day(3))],
    # a contract signed after it
    "contracts": [("A", "K3", "USD", Decimal("900"), Decimal("9000"), day(2), day(4))],
    # an invoice issued after it
    "invoices": [("I3", "A", day(1), day(2), Decimal("70"), Decimal("70"), day(1))],
    # B's open invoice paid before the scoring date, but exported (loaded) only after it; an invoice of A
    # issued before it but loaded after it
    "settlements": [("I2", day(-1), Decimal("50"), day(2))],
    # an opportunity created after it
    "opportunities": [("B", Decimal("5"), day(1), None, None)],
    # a rate of the day after
    "fx": [(day(1), "EUR", Decimal("2.0"))],
    # usage of a day inside the settled window known only after D0 (an anonymous device that signed in
    # later, or a late delivery: a new user and feature), and usage of D0 itself received the next day
    "usage": [("A", day(-6), "a3", "exports", day(1), 9), ("B", day(0), "b1", "reports", day(1), 4)],
    # a seat revoked inside the window, its event received after D0
    "seats": [("B", day(-10), day(2), 0, 1)],
}


def test_no_feature_changes_when_the_warehouse_learns_rows_after_the_scoring_date() -> None:
    base = marts()
    before = features_on(base, D0, DELINQUENCY_DAYS)
    assert before.height == 2 and before["open_past_due_usd"].sum() > 0  # B's invoice is open on D0
    for table, rows in FUTURE_ROWS.items():
        changed = with_rows(base, table, rows)
        assert_frame_equal(features_on(changed, D0, DELINQUENCY_DAYS), before, check_exact=True)
        # not vacuous: the same rows do change the features of a date after they became known
        assert not features_on(changed, day(10), DELINQUENCY_DAYS).equals(features_on(base, day(10), DELINQUENCY_DAYS))


def test_an_opportunity_closed_after_the_scoring_date_was_still_open_on_it() -> None:
    base = marts()
    closed = base["opportunities"].with_columns(closed_date=pl.lit(day(5)), is_won=pl.lit(True))
    features = features_on({**base, "opportunities": closed}, D0, DELINQUENCY_DAYS)
    a = features.filter(pl.col("customer_id") == "A")
    assert a["open_opportunities"].item() == 1 and a["won_opportunities_365d"].item() == 0


def test_payment_behaviour_as_known_on_the_day() -> None:
    features = features_on(marts(), D0, DELINQUENCY_DAYS).sort("customer_id")
    a, b = features.row(0, named=True), features.row(1, named=True)
    assert a["late_invoices_180d"] == 1 and a["days_past_due_max"] == 0  # paid 20 days after its due date
    assert b["days_past_due_max"] == 20 and b["delinquent"] == 0 and b["open_past_due_usd"] == 55.0
    assert features_on(marts(), day(41), DELINQUENCY_DAYS).filter(pl.col("customer_id") == "B")["delinquent"].item()


def test_usage_trend_and_breadth_over_the_settled_weeks() -> None:
    """B's usage fell to a third two weeks before the window's end and it gave a seat up; A's is steady."""
    features = features_on(marts(), D0, DELINQUENCY_DAYS).sort("customer_id")
    a, b = features.row(0, named=True), features.row(1, named=True)
    assert a["usage_events_trend"] == 1.0 and b["usage_events_trend"] < 0.5
    assert (a["active_users_28d"], a["features_used_28d"], a["seats"]) == (2, 2, 3)
    assert (b["seats"], b["seats_revoked_28d"], b["active_users_per_seat"]) == (1, 1, 1.0)
    # the window ends usage_settle_days before the scoring date: the last days' usage is not complete yet
    assert a["usage_events_28d"] == 28 * 7 + 14


def test_a_feature_set_whose_tables_are_missing_drops_out() -> None:
    """A set naming tables the warehouse lacks (usage on an engine without its models) is left out."""
    without_usage = {k: v for k, v in marts().items() if k not in ("usage", "seats")}
    assert [s.name for s in available_sets(without_usage)] == ["contracts", "lifecycle", "payments", "pipeline"]
    assert "usage_events_28d" not in features_on(without_usage, D0, DELINQUENCY_DAYS).columns
    extra = FeatureSet("extra", ("missing",), ("x",), lambda m, d, n: pl.DataFrame())
    assert "x" not in features_on(marts(), D0, DELINQUENCY_DAYS, (*FEATURE_SETS, extra)).columns


def test_the_label_looks_90_days_ahead_and_is_unknown_past_the_data() -> None:
    features = pl.DataFrame({"customer_id": ["A", "A", "B"], "date": [D0, day(50), D0]})
    transitions = pl.DataFrame({"customer_id": ["A"], "changed_date": [day(90)]})
    labelled = label(features, transitions, last_known=day(100)).sort("customer_id", "date")
    # A on day 50 does churn on day 90, but its horizon runs past the data: unknown, like everyone's that day
    assert labelled["churns_within_horizon"].to_list() == [True, None, False]
    assert label(features, transitions, last_known=day(140))["churns_within_horizon"].to_list() == [True, True, False]
    unknown = label(features, pl.DataFrame(schema=transitions.schema), last_known=day(100))
    assert unknown.sort("customer_id", "date")["churns_within_horizon"].to_list() == [False, None, False]


def test_a_mart_table_without_a_known_on_date_is_refused() -> None:
    with pytest.raises(ValueError, match="known-on date"):
        features_on({**marts(), "mystery": pl.DataFrame({"x": [1]})}, D0, DELINQUENCY_DAYS)

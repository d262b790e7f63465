"""Point-in-time features per customer (the ultimate parent) and scoring date, read from the marts.

A feature for date D may use only what the warehouse knew at the end of D. Each mart row therefore
carries the date it became known (:data:`KNOWN_ON`): the day of the event it records and, for the
accounting facts, the partition it was loaded with (a payment made before D but exported after D was not
known on D). :func:`known_by` cuts every table at D *before* any feature is computed, so no feature
function can see a later row, whatever it does; the label (:mod:`dataops.models.labels`) is the only thing
that looks ahead, and only for training.

Feature sets are pluggable (:data:`FEATURE_SETS`): each names the mart tables it needs, and a set whose
tables the warehouse does not have (the product's usage on an engine without its models) is left out, so
the same code trains on whatever the warehouse holds and the model card lists what it used.

The product's usage arrives late (mobile clients offline, up to ``usage.late_arrival_hours``) and the usage
models restate past days as it lands, so a usage row is known from the day its last event was received
(for an anonymous event, also the day its device's sign-in was) plus a day for delivery to the lake, not
from the day it happened. Usage windows end ``usage_settle_days`` before the scoring date, so that they
hold every event of their days that will ever arrive, on the scoring date as in training.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from dataops.core.warehouse import connect, query_frame
from registry.loader import Usage, load_registry

# Each mart table read, the columns used, and the date columns that say when a row became known.
MART_QUERIES: dict[str, str] = {
    "states": "select customer_id, date_day, state, live_contract_count, paused_contract_count "
    "from marts.fct_customer_states_daily",
    "contracts": "select customer_id, contract_id, currency_code, mrr_amount, total_contract_value, signed_date, "
    "go_live_date from marts.fct_contracts",
    "contract_events": "select customer_id, contract_id, to_status, changed_date from marts.fct_contract_state_events",
    "invoices": "select invoice_id, customer_id, invoice_date, due_date, invoice_amount, invoice_amount_usd, "
    "loaded_partition from marts.fct_invoices",
    "settlements": "select invoice_id, payment_date as settled_on, payment_amount as amount, loaded_partition "
    "from marts.fct_payments union all select invoice_id, credit_memo_date, credit_amount, loaded_partition "
    "from marts.fct_credit_memos",
    "opportunities": "select customer_id, amount, created_date, closed_date, is_won from marts.fct_opportunities "
    "where customer_id is not null",
    "fx": "select rate_date, currency_code, usd_per_unit from marts.fct_fx_rates",
}
KNOWN_ON: dict[str, tuple[str, ...]] = {
    "states": ("date_day",),
    "contracts": ("signed_date",),
    "contract_events": ("changed_date",),
    "invoices": ("invoice_date", "loaded_partition"),
    "settlements": ("settled_on", "loaded_partition"),
    "opportunities": ("created_date",),
    "fx": ("rate_date",),
    "usage": ("event_date", "known_date"),
    "seats": ("event_date", "known_date"),
}
# An hourly object of events reaches the lake up to a day after its events were received (a held-back
# late-evening hour is delivered the next day): a usage row is known from its receipt's date plus this.
DELIVERY_DAYS = 1


def usage_queries() -> dict[str, str]:
    """The product's usage per customer, day, user and feature, and its seat changes, each with its known-on date.

    Read from the usage models built for it (``int_usage_known_daily``, ``int_usage_seat_changes_daily``:
    tables, so they are in the build warehouse whichever engine built them); a row is known from the date it
    was received plus the lake's delivery delay.
    """
    return {
        "usage": "select customer_id, event_date, user_id, feature, "
        f"received_date + {DELIVERY_DAYS} as known_date, usage_events "
        "from intermediate.int_usage_known_daily",
        "seats": "select customer_id, event_date, "
        f"received_date + {DELIVERY_DAYS} as known_date, seats_assigned, seats_revoked "
        "from intermediate.int_usage_seat_changes_daily",
    }


# Customers scored on a date: those with a contract live or paused (only they can churn).
SCORED_STATES = ("active", "paused")
KEY = ("customer_id", "date")

Marts = Mapping[str, pl.DataFrame]
FeatureFunction = Callable[[Marts, dt.date, int], pl.DataFrame]


@dataclass(frozen=True)
class FeatureSet:
    """Features computed together from some mart tables: a frame keyed by ``customer_id`` for one date."""

    name: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    compute: FeatureFunction


def read_marts(warehouse: Path, extra: Mapping[str, str] | None = None) -> dict[str, pl.DataFrame]:
    """The mart tables the features need (the usage ones included, and any extra), from a warehouse file.

    A table the warehouse lacks is simply absent from the result: the feature sets that need it drop out.
    """
    queries = {**MART_QUERIES, **usage_queries(), **(extra or {})}
    out: dict[str, pl.DataFrame] = {}
    with connect(warehouse, read_only=True) as conn:
        for name, sql in queries.items():
            try:
                out[name] = query_frame(conn, sql)
            except duckdb.CatalogException:
                continue
    return out


def known_by(marts: Marts, day: dt.date, known_on: Mapping[str, tuple[str, ...]] = KNOWN_ON) -> dict[str, pl.DataFrame]:
    """Every table as the warehouse knew it at the end of ``day``: rows known later are cut away.

    An opportunity closed after ``day`` was still open on it, so its outcome is forgotten too.
    """
    out: dict[str, pl.DataFrame] = {}
    for name, frame in marts.items():
        columns = known_on.get(name)
        if columns is None:
            raise ValueError(f"mart table {name!r} has no known-on date: say when its rows become known")
        condition = pl.all_horizontal([pl.col(c) <= day for c in columns])
        out[name] = frame.filter(condition)
    if "opportunities" in out:
        closed_later = pl.col("closed_date").is_null() | (pl.col("closed_date") > day)
        out["opportunities"] = out["opportunities"].with_columns(
            closed_date=pl.when(closed_later).then(None).otherwise(pl.col("closed_date")),
            is_won=pl.when(closed_later).then(None).otherwise(pl.col("is_won")),
        )
    return out


def _days(expr: pl.Expr, day: dt.date) -> pl.Expr:
    return (pl.lit(day) - expr).dt.total_days()


def _latest_status(events: pl.DataFrame) -> pl.DataFrame:
    return (
        events.sort("changed_date")
        .group_by("contract_id")
        .agg(pl.col("customer_id").last(), pl.col("to_status").last())
    )


def contract_features(marts: Marts, day: dt.date, delinquency_days: int) -> pl.DataFrame:
    """Contract age and amounts (USD at the day's rate), live and paused contracts."""
    fx = marts["fx"].sort("rate_date").group_by("currency_code").agg(usd=pl.col("usd_per_unit").last().cast(pl.Float64))
    status = _latest_status(marts["contract_events"])
    live = status.filter(pl.col("to_status").is_in(["live", "cancellation_requested"]))["contract_id"]
    contracts = marts["contracts"].join(fx, on="currency_code", how="left").with_columns(pl.col("usd").fill_null(1.0))
    return contracts.group_by("customer_id").agg(
        tenure_days=_days(pl.col("go_live_date").filter(pl.col("go_live_date") <= day).min(), day).fill_null(0),
        days_since_last_signed=_days(pl.col("signed_date").max(), day),
        contracts_signed=pl.len(),
        mrr_usd=(pl.col("mrr_amount").cast(pl.Float64) * pl.col("usd"))
        .filter(pl.col("contract_id").is_in(live.to_list()))
        .sum(),
        contract_value_usd=(pl.col("total_contract_value").cast(pl.Float64) * pl.col("usd")).sum(),
    )


def lifecycle_features(marts: Marts, day: dt.date, delinquency_days: int) -> pl.DataFrame:
    """Pauses and cancellation requests: the contract events the CRM recorded."""
    events = marts["contract_events"]
    status = _latest_status(events)
    recent = events.with_columns(age=_days(pl.col("changed_date"), day))
    counts = recent.group_by("customer_id").agg(
        pauses_365d=((pl.col("to_status") == "paused") & (pl.col("age") < 365)).sum(),
        cancellations_requested_365d=((pl.col("to_status") == "cancellation_requested") & (pl.col("age") < 365)).sum(),
        days_since_last_change=pl.col("age").min(),
    )
    now = status.group_by("customer_id").agg(
        contracts_cancellation_requested=(pl.col("to_status") == "cancellation_requested").sum(),
        contracts_paused=(pl.col("to_status") == "paused").sum(),
    )
    return counts.join(now, on="customer_id", how="full", coalesce=True)


def payment_features(marts: Marts, day: dt.date, delinquency_days: int) -> pl.DataFrame:
    """Payment behaviour as known on the day: late, partial and missing payments, delinquency."""
    paid = (
        marts["settlements"]
        .group_by("invoice_id")
        .agg(
            paid=pl.col("amount").cast(pl.Float64).sum(),
            settled_on=pl.col("settled_on").max(),
        )
    )
    invoices = (
        marts["invoices"]
        .join(paid, on="invoice_id", how="left")
        .with_columns(
            amount=pl.col("invoice_amount").cast(pl.Float64),
            paid=pl.col("paid").fill_null(0.0),
            due_age=_days(pl.col("due_date"), day),
        )
        .with_columns(open=(pl.col("amount") - pl.col("paid")).clip(lower_bound=0.0))
        .with_columns(
            is_open=pl.col("open") > 0.005,
            share_open=pl.when(pl.col("amount") > 0).then(pl.col("open") / pl.col("amount")).otherwise(0.0),
        )
    )
    due_recently = (pl.col("due_age") >= 0) & (pl.col("due_age") < 180)
    late = (pl.col("is_open") & (pl.col("due_age") > 0)) | (
        ~pl.col("is_open") & (pl.col("settled_on") > pl.col("due_date"))
    )
    frame = invoices.group_by("customer_id").agg(
        invoices_due_180d=due_recently.sum(),
        late_invoices_180d=(due_recently & late).sum(),
        partly_paid_open=(pl.col("is_open") & (pl.col("paid") > 0) & (pl.col("due_age") > 0)).sum(),
        days_past_due_max=pl.col("due_age").filter(pl.col("is_open") & (pl.col("due_age") > 0)).max().fill_null(0),
        open_past_due_usd=(pl.col("share_open") * pl.col("invoice_amount_usd").cast(pl.Float64))
        .filter(pl.col("is_open") & (pl.col("due_age") > 0))
        .sum(),
        billed_usd_90d=pl.col("invoice_amount_usd")
        .cast(pl.Float64)
        .filter(_days(pl.col("invoice_date"), day) < 90)
        .sum(),
    )
    return frame.with_columns(
        late_share_180d=pl.when(pl.col("invoices_due_180d") > 0)
        .then(pl.col("late_invoices_180d") / pl.col("invoices_due_180d"))
        .otherwise(0.0),
        delinquent=(pl.col("days_past_due_max") > delinquency_days).cast(pl.Int64),
    )


def pipeline_features(marts: Marts, day: dt.date, delinquency_days: int) -> pl.DataFrame:
    """Opportunities with the customer: open ones (an expansion under way), won and lost in the last year."""
    opps = marts["opportunities"].with_columns(closed_age=_days(pl.col("closed_date"), day))
    return opps.group_by("customer_id").agg(
        open_opportunities=pl.col("closed_date").is_null().sum(),
        won_opportunities_365d=(pl.col("is_won").fill_null(False) & (pl.col("closed_age") < 365)).sum(),
        lost_opportunities_365d=((~pl.col("is_won").fill_null(True)) & (pl.col("closed_age") < 365)).sum(),
    )


@cache
def _usage_rules() -> Usage:
    return load_registry().usage


def usage_settle_days(usage: Usage) -> int:
    """Days before the scoring date at which usage windows end: every event of their days has arrived."""
    return usage.late_arrival_days + DELIVERY_DAYS


def _ratio(recent: pl.Expr, prior: pl.Expr) -> pl.Expr:
    """Recent over prior activity, both smoothed by one: 1 is steady, below 1 a decline, 0 none at all."""
    return (recent.cast(pl.Float64) + 1.0) / (prior.cast(pl.Float64) + 1.0)


def usage_features(marts: Marts, day: dt.date, delinquency_days: int) -> pl.DataFrame:
    """Usage trend and breadth over the last settled weeks: events, active users and features, seats."""
    rules = _usage_rules()
    trend, month = rules.health_score.trend_days, rules.monthly_days
    end = day - dt.timedelta(days=usage_settle_days(rules))
    age = (pl.lit(end) - pl.col("event_date")).dt.total_days()
    recent, prior, monthly = (
        age.is_between(0, trend - 1),
        age.is_between(trend, 2 * trend - 1),
        age.is_between(0, month - 1),
    )
    usage = marts["usage"].with_columns(recent=recent, prior=prior, monthly=monthly)
    activity = usage.group_by("customer_id").agg(
        usage_events_28d=pl.col("usage_events").filter("monthly").sum(),
        usage_events_trend=_ratio(
            pl.col("usage_events").filter("recent").sum(), pl.col("usage_events").filter("prior").sum()
        ),
        active_users_28d=pl.col("user_id").filter("monthly").n_unique(),
        active_users_trend=_ratio(
            pl.col("user_id").filter("recent").n_unique(), pl.col("user_id").filter("prior").n_unique()
        ),
        features_used_28d=pl.col("feature").filter("monthly").drop_nulls().n_unique(),
        features_dropped_14d=(
            pl.col("feature")
            .filter("prior")
            .drop_nulls()
            .unique()
            .is_in(pl.col("feature").filter("recent").drop_nulls().unique().implode())
            .not_()
            .sum()
        ),
    )
    seats = (
        marts["seats"]
        .filter(pl.col("event_date") <= end)
        .with_columns(monthly=(pl.lit(end) - pl.col("event_date")).dt.total_days() < month)
        .group_by("customer_id")
        .agg(
            seats=(pl.col("seats_assigned").sum() - pl.col("seats_revoked").sum()).clip(lower_bound=0),
            seats_revoked_28d=pl.col("seats_revoked").filter("monthly").sum(),
        )
    )
    out = activity.join(seats, on="customer_id", how="full", coalesce=True).with_columns(
        pl.col("seats", "active_users_28d").fill_null(0)
    )
    return out.with_columns(
        active_users_per_seat=pl.when(pl.col("seats") > 0)
        .then(pl.col("active_users_28d") / pl.col("seats"))
        .otherwise(0.0)
    )


FEATURE_SETS: tuple[FeatureSet, ...] = (
    FeatureSet(
        "contracts",
        ("contracts", "contract_events", "fx"),
        ("tenure_days", "days_since_last_signed", "contracts_signed", "mrr_usd", "contract_value_usd"),
        contract_features,
    ),
    FeatureSet(
        "lifecycle",
        ("contract_events",),
        (
            "pauses_365d",
            "cancellations_requested_365d",
            "days_since_last_change",
            "contracts_cancellation_requested",
            "contracts_paused",
        ),
        lifecycle_features,
    ),
    FeatureSet(
        "payments",
        ("invoices", "settlements"),
        (
            "invoices_due_180d",
            "late_invoices_180d",
            "partly_paid_open",
            "days_past_due_max",
            "open_past_due_usd",
            "billed_usd_90d",
            "late_share_180d",
            "delinquent",
        ),
        payment_features,
    ),
    FeatureSet(
        "pipeline",
        ("opportunities",),
        ("open_opportunities", "won_opportunities_365d", "lost_opportunities_365d"),
        pipeline_features,
    ),
    FeatureSet(
        "usage",
        ("usage", "seats"),
        (
            "usage_events_28d",
            "usage_events_trend",
            "active_users_28d",
            "active_users_trend",
            "features_used_28d",
            "features_dropped_14d",
            "seats",
            "seats_revoked_28d",
            "active_users_per_seat",
        ),
        usage_features,
    ),
)


def available_sets(marts: Marts, sets: Iterable[FeatureSet] = FEATURE_SETS) -> list[FeatureSet]:
    """The feature sets whose mart tables the warehouse holds."""
    return [s for s in sets if all(t in marts for t in s.tables)]


def population(marts: Marts, day: dt.date) -> pl.DataFrame:
    """Customers with a contract live or paused at the end of the day (the ones that can churn)."""
    states = marts["states"].filter((pl.col("date_day") == day) & pl.col("state").is_in(SCORED_STATES))
    return states.select("customer_id").unique().sort("customer_id")


def features_on(
    marts: Marts, day: dt.date, delinquency_days: int, sets: Iterable[FeatureSet] = FEATURE_SETS
) -> pl.DataFrame:
    """One row per scored customer for one date, every feature from what was known by its end."""
    known = known_by(marts, day)
    out = population(known, day).with_columns(date=pl.lit(day))
    for feature_set in available_sets(known, sets):
        computed = feature_set.compute(known, day, delinquency_days).select("customer_id", *feature_set.columns)
        out = out.join(computed, on="customer_id", how="left")
    numeric = [c for c in out.columns if c not in KEY]
    return out.with_columns(pl.col(numeric).cast(pl.Float64).fill_null(0.0)).select(*KEY, *numeric)


def build_features(
    marts: Marts, days: Iterable[dt.date], delinquency_days: int, sets: Iterable[FeatureSet] = FEATURE_SETS
) -> pl.DataFrame:
    """Features for every scoring date, stacked (customer_id, date, features...)."""
    chosen = list(sets)
    frames = [features_on(marts, day, delinquency_days, chosen) for day in sorted(set(days))]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame()


def scoring_dates(first: dt.date, last: dt.date, every_days: int) -> list[dt.date]:
    """Dates from ``last`` back to ``first``, every ``every_days`` days (the last date always included)."""
    count = (last - first).days // every_days
    return sorted(last - dt.timedelta(days=every_days * i) for i in range(count + 1))

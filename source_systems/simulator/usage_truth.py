"""Ground truth of the product's usage: per user, account and customer and day, and the usage KPIs.

Computed from the usage ledger the event pipeline keeps while it delivers (each event counted once, on
the day of its corrected time, from the day its first complete copy was delivered; see
``simulator/events.py``), never from the delivered objects. Definitions come from the registry
(``usage``, ``usage_kpis``): which event types make a feature, the windows, the health score's rules.

Knowledge has a time here too: an event that arrives late changes the days before. Every KPI is computed
as known ``L`` days after its day for L = 0 .. the late-arrival horizon (``usage.late_arrival_hours``), after
which nothing can change it; ``usage_kpi_daily_history`` keeps each version with its ``known_at``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import polars as pl

from registry.loader import Registry
from source_systems.product import catalog
from source_systems.simulator import health
from source_systems.simulator.events import RUN_GAP_MS
from source_systems.simulator.state import State
from source_systems.simulator.truth import STATE_NAMES

VALUE_TYPE = pl.Decimal(38, 2)


@dataclass
class UsageTruth:
    users_daily: pl.DataFrame
    accounts_daily: pl.DataFrame
    customers_daily: pl.DataFrame
    kpi_daily: pl.DataFrame
    kpi_daily_history: pl.DataFrame
    sessions: pl.DataFrame
    sessions_daily: pl.DataFrame


def window_min(x: np.ndarray, width: int) -> np.ndarray:
    """Minimum over the ``width`` days ending at each day (last axis), by doubling windows."""
    big = np.iinfo(x.dtype).max
    out, span = x, 1
    while span * 2 <= width:
        out = np.minimum(out, _shift(out, span, big))
        span *= 2
    if span < width:  # two overlapping windows of ``span`` days cover ``width`` days
        out = np.minimum(out, _shift(out, width - span, big))
    return out


def _shift(x: np.ndarray, days: int, fill: int) -> np.ndarray:
    """``x`` of ``days`` days before, along the last axis (``fill`` before the first day)."""
    if days == 0:
        return x
    out = np.full_like(x, fill)
    out[..., days:] = x[..., :-days]
    return out


def _window_sum(x: np.ndarray, first: int, last: int) -> np.ndarray:
    """Sum of ``x`` over the days from ``first`` to ``last`` days before each day (inclusive)."""
    total = np.zeros_like(x)
    for days in range(first, last + 1):
        total += _shift(x, days, 0)
    return total


def _ratio_cents(num: np.ndarray, den: np.ndarray, scale: int) -> np.ndarray:
    """round(scale * num / den, 2) in cents, half away from zero (non-negative inputs); 0 where den is 0."""
    num, den = num.astype(np.int64), den.astype(np.int64)
    safe = np.where(den > 0, den, 1)
    return np.where(den > 0, (2 * 100 * scale * num + safe) // (2 * safe), 0)


def compute_usage_truth(
    state: State,
    registry: Registry,
    start: dt.date,
    n_customers: int,
    customer_keys: np.ndarray,
    account_refs: np.ndarray,
    states: np.ndarray,
    delinquent: np.ndarray,
    paused: np.ndarray,
) -> UsageTruth:
    """``states``, ``delinquent``, ``paused``: [customer, day] from the business truth."""
    usage_def = registry.usage
    n = state.last_day + 1
    horizon = usage_def.late_arrival_days
    ledger = state.table("usage").filter((pl.col("day") >= 0) & (pl.col("day") < n) & (pl.col("known_day") < n))
    seats_ledger = state.table("seats").filter((pl.col("day") < n) & (pl.col("known_day") < n))
    for name, table in (("usage", ledger), ("seats", seats_ledger)):
        late = table.filter(pl.col("known_day") - pl.col("day") > horizon)
        if late.height:
            raise ValueError(f"the {name} ledger holds events known after the registry's horizon of {horizon} days")
    users = state.table("product_users")
    customer_of = dict(zip(users["user"].to_list(), users["customer"].to_list(), strict=True))
    account_of = dict(zip(users["user"].to_list(), users["account"].to_list(), strict=True))
    feature_of = _features(registry)
    ledger = ledger.with_columns(
        customer=pl.col("user").replace_strict(customer_of, return_dtype=pl.Int64),
        account=pl.col("user").replace_strict(account_of, return_dtype=pl.Int64),
        feature=pl.col("event_type").cast(pl.Int64).replace_strict(feature_of, default=-1, return_dtype=pl.Int64),
    )
    lags = range(horizon + 1)
    never = np.int32(n + horizon + 1)

    # users: the day each (user, day) became known, and the active-user KPIs
    user_ids, user_idx = np.unique(ledger["user"].to_numpy(), return_inverse=True)
    day = ledger["day"].to_numpy().astype(np.int64)
    known = ledger["known_day"].to_numpy().astype(np.int32)
    user_known = np.full((len(user_ids), n), never, dtype=np.int32)
    np.minimum.at(user_known, (user_idx, day), known)
    days = np.arange(n)
    limit = [days + lag for lag in lags]  # known by day + lag
    weekly = window_min(user_known, usage_def.weekly_days)
    monthly = window_min(user_known, usage_def.monthly_days)
    values: dict[str, list[np.ndarray]] = {
        "daily_active_users": [(user_known <= lim).sum(axis=0) for lim in limit],
        "weekly_active_users": [(weekly <= lim).sum(axis=0) for lim in limit],
        "monthly_active_users": [(monthly <= lim).sum(axis=0) for lim in limit],
    }
    # events of each day, by how late they became known
    events = ledger["events"].to_numpy().astype(np.int64)
    by_lag = np.zeros((horizon + 1, n), dtype=np.int64)
    np.add.at(by_lag, (known - day, day), events)
    values["usage_events"] = [by_lag[: lag + 1].sum(axis=0) for lag in lags]

    # customers: active by usage, and each feature's adoption among them
    customer = ledger["customer"].to_numpy()
    cust_known = np.full((n_customers, n), never, dtype=np.int32)
    np.minimum.at(cust_known, (customer, day), known)
    cust_window = window_min(cust_known, usage_def.monthly_days)
    active_customers = [(cust_window <= lim).sum(axis=0) for lim in limit]
    values["usage_active_customers"] = active_customers
    feature = ledger["feature"].to_numpy()
    has = feature >= 0
    features = usage_def.feature_names
    feat_known = np.full((len(features), n_customers, n), never, dtype=np.int32)
    np.minimum.at(feat_known, (feature[has], customer[has], day[has]), known[has])
    feat_window = window_min(feat_known, usage_def.adoption_window_days)
    for f, name in enumerate(features):
        adopters = [(feat_window[f] <= lim).sum(axis=0) for lim in limit]
        values[f"feature_adoption_{name}"] = [
            _ratio_cents(a, b, 100) for a, b in zip(adopters, active_customers, strict=True)
        ]

    # seats, usage per seat and the health score
    seats = _seats(seats_ledger, n_customers, n, lags)
    values["usage_per_seat"] = [_ratio_cents(values["usage_events"][lag], seats[lag].sum(axis=0), 1) for lag in lags]
    cust_events = np.zeros((horizon + 1, n_customers, n), dtype=np.int64)
    np.add.at(cust_events, (known - day, customer, day), events)
    cust_events = np.cumsum(cust_events, axis=0)  # [lag]: known within lag days
    user_customer = np.array([customer_of[u] for u in user_ids.tolist()], dtype=np.int64)
    monthly_users = [_sum_by(user_customer, monthly <= lim, n_customers) for lim in limit]
    scored = np.isin(states, [health_state("active"), health_state("paused")])
    score_rules = usage_def.health_score
    scores = []
    for lag in lags:
        recent = np.zeros((n_customers, n), dtype=np.int64)
        prior = np.zeros((n_customers, n), dtype=np.int64)
        for j in range(2 * score_rules.trend_days):  # a day j days back is known j days longer
            (recent if j < score_rules.trend_days else prior)[...] += _shift(cust_events[min(horizon, lag + j)], j, 0)
        score = np.full((n_customers, n), score_rules.start, dtype=np.int64)
        score -= np.where(2 * recent < prior, score_rules.points("usage_decline"), 0)
        score -= np.where(2 * monthly_users[lag] < seats[lag], score_rules.points("low_seat_use"), 0)
        score -= np.where(delinquent, score_rules.points("delinquent"), 0)
        score -= np.where(paused, score_rules.points("paused"), 0)
        scores.append(np.maximum(score, 0))
        if lag == horizon:
            final = {"recent": recent, "prior": prior}
    values["at_risk_customers"] = [(scored & (score < score_rules.at_risk_below)).sum(axis=0) for score in scores]
    cents = {
        kpi: [v * 100 if not kpi.startswith("feature_adoption_") and kpi != "usage_per_seat" else v for v in vs]
        for kpi, vs in values.items()
    }
    missing = set(registry.usage_kpi_names) - set(cents)
    if missing:
        raise ValueError(f"the usage truth does not compute registry usage KPIs {sorted(missing)}")
    dates = [start + dt.timedelta(days=i) for i in range(n)]
    kpi_daily, history = _kpi_frames(registry, cents, dates, horizon)

    # per user, account and customer, as known on the last day
    final_events = ledger.group_by("day", "user", "account", "customer").agg(pl.col("events").sum())
    users_daily = (
        final_events.with_columns(
            date=pl.lit(start) + pl.duration(days=pl.col("day")),
            user_id=pl.lit("003") + pl.col("user").cast(pl.String).str.zfill(9),
            account_ref=pl.Series(account_refs).gather(final_events["account"]),
            customer_key=pl.Series(customer_keys).gather(final_events["customer"]),
        )
        .select("date", "user_id", "account_ref", "customer_key", "events")
        .sort("date", "user_id")
    )
    accounts_daily = (
        users_daily.group_by("date", "account_ref", "customer_key")
        .agg(active_users=pl.len().cast(pl.Int64), events=pl.col("events").sum())
        .sort("date", "account_ref")
    )
    customers_daily = _customers_daily(
        dates,
        customer_keys,
        scored,
        cust_events[horizon],
        monthly_users[horizon],
        seats[horizon],
        final,
        delinquent,
        paused,
        scores[horizon],
        score_rules.at_risk_below,
        user_known,
        user_customer,
        int(never),
    )
    runs = state.table("usage_runs").filter((pl.col("day") >= 0) & (pl.col("day") < n) & (pl.col("known_day") < n))
    sessions = _sessions(runs, usage_def.session_gap_minutes, start, users, account_refs, customer_keys)
    return UsageTruth(
        users_daily, accounts_daily, customers_daily, kpi_daily, history, sessions, _sessions_daily(sessions)
    )


def _sessions(
    runs: pl.DataFrame,
    gap_minutes: int,
    start: dt.date,
    users: pl.DataFrame,
    account_refs: np.ndarray,
    customer_keys: np.ndarray,
) -> pl.DataFrame:
    """Every session as known now: a user's usage events of a day, a new session after a gap of more than
    ``gap_minutes``; from the usage runs, merged where less than the gap separates them."""
    gap_ms = gap_minutes * 60_000
    if gap_ms < RUN_GAP_MS:
        raise ValueError(f"a session gap of {gap_minutes} minutes is shorter than the usage runs' {RUN_GAP_MS} ms")
    merged = (
        runs.sort("user", "day", "first_ms")
        .with_columns(before=pl.col("last_ms").cum_max().shift(1).over("user", "day"))
        .with_columns(session=(pl.col("before").is_null() | (pl.col("first_ms") - pl.col("before") > gap_ms)).cum_sum())
        .group_by("session")
        .agg(
            pl.col("day").first(),
            pl.col("user").first(),
            pl.col("first_ms").min(),
            pl.col("last_ms").max(),
            pl.col("events").sum(),
        )
    )
    rows = users.select("user", "account", "customer")
    merged = merged.join(rows, on="user", how="left")
    day_start = pl.lit(dt.datetime.combine(start, dt.time())) + pl.duration(days=pl.col("day"))
    return merged.select(
        date=pl.lit(start) + pl.duration(days=pl.col("day")),
        user_id=pl.lit("003") + pl.col("user").cast(pl.String).str.zfill(9),
        account_ref=pl.Series(account_refs).gather(merged["account"]),
        customer_key=pl.Series(customer_keys).gather(merged["customer"]),
        session_start=(day_start + pl.duration(milliseconds=pl.col("first_ms"))).cast(pl.Datetime("ms")),
        session_end=(day_start + pl.duration(milliseconds=pl.col("last_ms"))).cast(pl.Datetime("ms")),
        length_ms=(pl.col("last_ms") - pl.col("first_ms")).cast(pl.Int64),
        events=pl.col("events").cast(pl.Int64),
    ).sort("user_id", "session_start")


def _sessions_daily(sessions: pl.DataFrame) -> pl.DataFrame:
    """Per day: sessions, their users and events, and their average and median length in seconds (2 decimals,
    half up)."""
    daily = (
        sessions.group_by("date")
        .agg(
            sessions=pl.len().cast(pl.Int64),
            session_users=pl.col("user_id").n_unique().cast(pl.Int64),
            usage_events=pl.col("events").sum().cast(pl.Int64),
            total_ms=pl.col("length_ms").sum(),
            twice_median_ms=(pl.col("length_ms").median() * 2).round().cast(pl.Int64),
        )
        .sort("date")
    )
    avg = (2 * daily["total_ms"] + 10 * daily["sessions"]) // (20 * daily["sessions"])
    median = (daily["twice_median_ms"] + 10) // 20
    return daily.select(
        "date",
        "sessions",
        "session_users",
        "usage_events",
        avg_session_seconds=pl.Series([Decimal(c).scaleb(-2) for c in avg.to_list()], dtype=pl.Decimal(18, 2)),
        median_session_seconds=pl.Series([Decimal(c).scaleb(-2) for c in median.to_list()], dtype=pl.Decimal(18, 2)),
    )


def health_state(name: str) -> int:
    """The truth's code of a customer state."""
    return int(np.flatnonzero(name == STATE_NAMES)[0])


def _features(registry: Registry) -> dict[int, int]:
    """Event type code -> index of its feature in the registry (by name; codes are the simulator's)."""
    index = {}
    for f, (_, types) in enumerate(registry.usage.features):
        for name in types:
            codes = np.flatnonzero(name == catalog.EVENT_TYPES)
            index.update({int(c): f for c in codes})
    return index


def _seats(ledger: pl.DataFrame, n_customers: int, n: int, lags: range) -> list[np.ndarray]:
    """Seats per [customer, day] at the day's end as known ``lag`` days later, for each lag."""
    day = ledger["day"].to_numpy().astype(np.int64)
    known = ledger["known_day"].to_numpy().astype(np.int64)
    customer = ledger["customer"].to_numpy()
    delta = ledger["delta"].to_numpy().astype(np.int64)
    out = []
    for lag in lags:
        since = np.maximum(np.maximum(day, known - lag), 0)  # counted from the first day it is both done and known
        diff = np.zeros((n_customers, n + 1), dtype=np.int64)
        np.add.at(diff, (customer, np.minimum(since, n)), delta)
        out.append(np.cumsum(diff, axis=1)[:, :n])
    return out


def _sum_by(groups: np.ndarray, flags: np.ndarray, n_groups: int) -> np.ndarray:
    """Rows of ``flags`` [row, day] added up by each row's group."""
    out = np.zeros((n_groups, flags.shape[1]), dtype=np.int64)
    np.add.at(out, groups, flags.astype(np.int64))
    return out


def _kpi_frames(
    registry: Registry, cents: dict[str, list[np.ndarray]], dates: list[dt.date], horizon: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = len(dates)
    names = registry.usage_kpi_names
    frames, history = [], []
    for kpi in names:
        frames.append(_frame(dates, kpi, cents[kpi][horizon], range(n)))
        known_at = list(range(n))
        history.append(_frame(dates, kpi, cents[kpi][0], range(n), known_at))
        for lag in range(1, horizon + 1):
            days = np.flatnonzero((cents[kpi][lag] != cents[kpi][lag - 1]) & (np.arange(n) + lag <= n - 1))
            if len(days):
                history.append(_frame(dates, kpi, cents[kpi][lag], days, [int(d) + lag for d in days]))
    order = {name: i for i, name in enumerate(names)}
    daily = pl.concat(frames).with_columns(_o=pl.col("kpi").replace_strict(order, return_dtype=pl.Int64))
    return daily.sort("date", "_o").drop("_o"), pl.concat(history).sort("date", "kpi", "known_at")


def _frame(
    dates: list[dt.date], kpi: str, values: np.ndarray, days: range | np.ndarray, known_at: list[int] | None = None
) -> pl.DataFrame:
    picked = [int(d) for d in days]
    data: dict[str, object] = {
        "date": [dates[d] for d in picked],
        "kpi": [kpi] * len(picked),
        "value": [Decimal(int(values[d])).scaleb(-2) for d in picked],
    }
    if known_at is not None:
        data["known_at"] = [dates[k] for k in known_at]
    return pl.DataFrame(data, schema_overrides={"value": VALUE_TYPE})


def _customers_daily(
    dates: list[dt.date],
    keys: np.ndarray,
    scored: np.ndarray,
    events: np.ndarray,
    monthly_users: np.ndarray,
    seats: np.ndarray,
    trend: dict[str, np.ndarray],
    delinquent: np.ndarray,
    paused: np.ndarray,
    score: np.ndarray,
    at_risk_below: int,
    user_known: np.ndarray,
    user_customer: np.ndarray,
    never: int,
) -> pl.DataFrame:
    """One row per customer and day while it has a live or paused contract, or uses the product."""
    n_customers = events.shape[0]
    daily_users = _sum_by(user_customer, user_known < never, n_customers)
    keep = scored | (events > 0) | (seats != 0)
    c, d = np.nonzero(keep)
    frame_ = pl.DataFrame(
        {
            "date": [dates[i] for i in d.tolist()],
            "customer_key": keys[c],
            "active_users": daily_users[c, d],
            "events": events[c, d],
            "monthly_active_users": monthly_users[c, d],
            "seats": seats[c, d],
            "events_recent": trend["recent"][c, d],
            "events_prior": trend["prior"][c, d],
            "is_delinquent": delinquent[c, d],
            "has_paused_contract": paused[c, d],
            "_scored": scored[c, d],
            "_score": score[c, d],
        },
        schema_overrides={"date": pl.Date},
    )
    # the score is defined for customers with a live or paused contract
    return (
        frame_.with_columns(
            health_score=pl.when(pl.col("_scored")).then(pl.col("_score")),
            is_at_risk=pl.when(pl.col("_scored")).then(pl.col("_score") < at_risk_below),
        )
        .drop("_scored", "_score")
        .sort("date", "customer_key")
    )


def latent_health_frames(
    state: State, start: dt.date, n_customers: int, keys: np.ndarray, states: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The simulator's hidden truth for judging a churn model: daily latent health and risk, and each churn.

    ``customer_latent_health``: per customer and day with a live or paused contract, its latent health,
    the daily chance of a cancellation request that health implies (the silent kind aside), and whether it
    churns (becomes churned) within the next 90 days (null where the 90 days pass the simulation's end).
    ``churn_events``: every cancellation request and termination with its cause (health, silent, scripted).
    """
    n = state.last_day + 1
    path = state.table("health_daily").filter(pl.col("day") < n)
    churned = np.zeros((n_customers, n), dtype=bool)
    churn_code = health_state("churned")
    churned[:, 1:] = (states[:, 1:] == churn_code) & (states[:, :-1] != churn_code)
    # first churn day at or after each day
    next_churn = np.full((n_customers, n + 1), np.iinfo(np.int64).max, dtype=np.int64)
    for d in range(n - 1, -1, -1):
        next_churn[:, d] = np.where(churned[:, d], d, next_churn[:, d + 1])
    day = path["day"].to_numpy()
    cust = path["customer"].to_numpy()
    h = path["h"].to_numpy()
    upcoming = next_churn[cust, np.minimum(day + 1, n)]
    within = upcoming <= day + 90
    horizon_known = day + 90 <= n - 1
    latent = pl.DataFrame(
        {
            "date": [start + dt.timedelta(days=int(x)) for x in day.tolist()],
            "customer_key": keys[cust],
            "latent_health": h,
            "cancel_hazard": health.cancel_hazard(h),
            # known where the 90 days are simulated, or where the churn already happened within them
            "churns_within_90_days": pl.Series(
                [bool(w) if k or w else None for w, k in zip(within.tolist(), horizon_known.tolist(), strict=True)],
                dtype=pl.Boolean,
            ),
        },
        schema_overrides={"date": pl.Date, "customer_key": pl.String},
    )
    causes = state.table("churn_causes").filter(pl.col("day") < n)
    contracts = state.table("contracts").select("contract", "customer")
    churn = causes.join(contracts, on="contract").sort("day", "contract")
    events = pl.DataFrame(
        {
            "date": [start + dt.timedelta(days=int(x)) for x in churn["day"].to_list()],
            "customer_key": keys[churn["customer"].to_numpy()] if churn.height else np.array([], dtype=str),
            "contract_no": [f"K{k:07d}" for k in churn["contract"].to_list()],
            "to_status": np.where(churn["to_status"].to_numpy() == 3, "cancellation_requested", "ended"),
            "cause": health.CAUSES[churn["cause"].to_numpy()],
        },
        schema_overrides={"date": pl.Date, "customer_key": pl.String},
    )
    return latent, events

"""Ground truth: every KPI on every day, computed from the ledger of what really happened.

Never derived from the records the systems emitted (those are dirty): the ledger holds the business's
own events in integers, and the enterprise's definitions come from the registry, so changing a
definition there changes the truth. Money is converted with integer arithmetic to the cent (per
currency and day, half away from zero), exactly as the registry's conversion rule says.

Knowledge has a time: a journal line posted to a closed month, or a payment delivered by a corrected
re-export, changes the value of a past day from the day it arrives. ``kpi_daily_history`` keeps each
version with its ``known_at`` date; ``kpi_daily`` is what is known on the last simulated day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from registry.loader import Registry
from source_systems.simulator.state import State

PROSPECT, ONBOARDING, ACTIVE, PAUSED, CHURNED = range(5)
STATE_NAMES = np.array(["prospect", "onboarding", "active", "paused", "churned"])
LIVE_CODES = {"live": 1, "cancellation_requested": 3}
PAUSED_CODE = 2
VALUE_TYPE = pl.Decimal(38, 2)


def to_usd_cents(cents: np.ndarray, rate_micro: np.ndarray) -> np.ndarray:
    """Convert per-currency totals [currency, day] to USD cents and add them up (registry rule)."""
    x = cents.astype(np.int64) * rate_micro.astype(np.int64)
    converted = np.sign(x) * ((np.abs(x) + 500_000) // 1_000_000)
    return converted.sum(axis=0)


def _interval_sum(
    n_rows: int, n_days: int, row: np.ndarray, start: np.ndarray, stop: np.ndarray, weight: np.ndarray | int = 1
) -> np.ndarray:
    """Dense [row, day] totals of weighted half-open day intervals [start, stop)."""
    diff = np.zeros((n_rows, n_days + 1), dtype=np.int64)
    w = np.broadcast_to(np.asarray(weight, dtype=np.int64), row.shape)
    keep = start < stop
    np.add.at(diff, (row[keep], np.clip(start[keep], 0, n_days)), w[keep])
    np.add.at(diff, (row[keep], np.clip(stop[keep], 0, n_days)), -w[keep])
    return np.cumsum(diff, axis=1)[:, :n_days]


def _by_day(n_rows: int, n_days: int, row: np.ndarray, day: np.ndarray, weight: np.ndarray | int = 1) -> np.ndarray:
    out = np.zeros((n_rows, n_days), dtype=np.int64)
    keep = (day >= 0) & (day < n_days)
    w = np.broadcast_to(np.asarray(weight, dtype=np.int64), row.shape)
    np.add.at(out, (row[keep], day[keep]), w[keep])
    return out


@dataclass
class Truth:
    kpi_daily: pl.DataFrame
    kpi_daily_history: pl.DataFrame
    customer_states: pl.DataFrame


def contract_intervals(state: State, n_days: int) -> pl.DataFrame:
    """One row per status spell of a contract: status, from day (inclusive), to day (exclusive)."""
    changes = state.table("status_changes").with_row_index("seq")
    return (
        changes.sort("contract", "day", "seq")
        .unique(["contract", "day"], keep="last", maintain_order=True)
        .with_columns(stop=pl.col("day").shift(-1).over("contract").fill_null(n_days))
        .join(state.table("contracts").select("contract", "customer", "currency", "mrr"), on="contract")
    )


def customer_states(state: State, registry: Registry, n_customers: int, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """State codes [customer, day] at each day's end by the registry's rules, and the delinquency flags.

    The facts are computed from the ledger; which state they mean is the registry's (``customer_states``, first
    condition that holds wins), evaluated like dbt evaluates it, so a changed rule moves truth and models alike.
    """
    spells = contract_intervals(state, n_days)
    cust = spells["customer"].to_numpy()
    start = spells["day"].to_numpy()
    stop = spells["stop"].to_numpy()
    to = spells["to_status"].to_numpy()
    live = np.isin(to, list(LIVE_CODES.values()))
    paused = to == PAUSED_CODE
    live_n = _interval_sum(n_customers, n_days, cust[live], start[live], stop[live])
    paused_n = _interval_sum(n_customers, n_days, cust[paused], start[paused], stop[paused])
    signed = np.zeros((n_customers, n_days), dtype=bool)
    first_sign = state.table("contracts").group_by("customer").agg(pl.col("signed_day").min())
    for c, s in first_sign.iter_rows():
        if s < n_days:
            signed[c, max(s, 0) :] = True  # the installed base signed before the first day
    delinquent = delinquent_flags(state, registry, n_customers, n_days)
    facts = pl.DataFrame(
        {
            "live_contracts": live_n.ravel(),
            "paused_contracts": paused_n.ravel(),
            "ever_live": np.maximum.accumulate(live_n > 0, axis=1).ravel(),
            "ever_signed": signed.ravel(),
            "delinquent": delinquent.ravel(),
        }
    )
    codes = facts.select(_state_expression(registry).alias("code"))["code"].to_numpy()
    return codes.astype(np.int8).reshape(n_customers, n_days), delinquent


def _state_expression(registry: Registry) -> pl.Expr:
    """The registry's state rules as one polars expression: when ... then code ... otherwise code."""
    known = {str(name): code for code, name in enumerate(STATE_NAMES)}
    expression: Any = None
    for rule in registry.customer_states:
        if rule.name not in known:
            raise ValueError(f"the simulator's truth knows the states {sorted(known)}, not {rule.name!r}")
        if rule.when == "otherwise":
            return pl.lit(known[rule.name]) if expression is None else expression.otherwise(known[rule.name])
        condition = pl.sql_expr(rule.when)
        expression = pl.when(condition) if expression is None else expression.when(condition)
        expression = expression.then(known[rule.name])
    raise ValueError("the registry's last customer state must be `otherwise`")


def paused_flags(state: State, n_customers: int, n_days: int) -> np.ndarray:
    """[customer, day]: at least one contract paused at the day's end."""
    spells = contract_intervals(state, n_days).filter(pl.col("to_status") == PAUSED_CODE)
    count = _interval_sum(
        n_customers, n_days, spells["customer"].to_numpy(), spells["day"].to_numpy(), spells["stop"].to_numpy()
    )
    return count > 0


def states_before_first_day(state: State, registry: Registry, n_customers: int) -> np.ndarray:
    """Each customer's state at the end of the day before the first: the installed base is active."""
    shifted = State(last_day=state.last_day)
    shifted.replace("status_changes", state.table("status_changes").with_columns(pl.col("day") + 1))
    shifted.replace("contracts", state.table("contracts").with_columns(pl.col("signed_day") + 1))
    codes, _ = customer_states(shifted, registry, n_customers, 1)
    return codes[:, 0]


def delinquent_flags(state: State, registry: Registry, n_customers: int, n_days: int) -> np.ndarray:
    inv = state.table("invoices")
    if inv.height == 0:
        return np.zeros((n_customers, n_days), dtype=bool)
    settled = (
        state.table("settlements")
        .filter(pl.col("day") < n_days)
        .sort("invoice", "day")
        .with_columns(paid=pl.col("amount").cum_sum().over("invoice"))
        .join(inv.select("invoice", "amount"), on="invoice", suffix="_invoice")
        .filter(pl.col("paid") >= pl.col("amount_invoice"))
        .group_by("invoice")
        .agg(settled_day=pl.col("day").min())
    )
    inv = inv.join(settled, on="invoice", how="left").with_columns(pl.col("settled_day").fill_null(n_days))
    start = inv["due_day"].to_numpy() + registry.delinquency_days + 1
    count = _interval_sum(n_customers, n_days, inv["customer"].to_numpy(), start, inv["settled_day"].to_numpy())
    return count > 0


class _Money:
    """Per-currency daily amounts, with knowledge limited to what had arrived by a given day."""

    def __init__(self, state: State, n_days: int) -> None:
        self.n = n_days
        self.inv = state.table("invoices")
        self.settle = state.table("settlements")
        self.rev = state.table("revenue")

    def flows(self, known_by: int) -> dict[str, np.ndarray]:
        n = self.n
        rev = self.rev.filter(pl.col("known_day") <= known_by)
        cash = self.settle.filter((pl.col("kind") == 0) & (pl.col("known_day") <= known_by))
        settled = self.settle.filter(pl.col("known_day") <= known_by)
        billed = _by_day(
            3, n, self.inv["currency"].to_numpy(), self.inv["issue_day"].to_numpy(), self.inv["amount"].to_numpy()
        )
        out_flow = _by_day(
            3, n, settled["currency"].to_numpy(), settled["day"].to_numpy(), settled["amount"].to_numpy()
        )
        return {
            "billings_usd": billed,
            "revenue_usd": _by_day(3, n, rev["currency"].to_numpy(), rev["day"].to_numpy(), rev["amount"].to_numpy()),
            "cash_collected_usd": _by_day(
                3, n, cash["currency"].to_numpy(), cash["day"].to_numpy(), cash["amount"].to_numpy()
            ),
            "open_ar_usd": np.cumsum(billed - out_flow, axis=1),
        }

    def first_known(self) -> dict[str, np.ndarray]:
        """Each day's value as known at that day's end (late records not yet arrived)."""
        n = self.n
        everything = self.flows(known_by=np.iinfo(np.int64).max)
        rev = self.rev.filter(pl.col("known_day") == pl.col("day"))
        cash = self.settle.filter((pl.col("kind") == 0) & (pl.col("known_day") == pl.col("day")))
        late = self.settle.filter(pl.col("known_day") > pl.col("day"))
        # Open AR on day d still counts settlements made on or before d that arrive after d.
        pending = _interval_sum(
            3,
            n,
            late["currency"].to_numpy(),
            late["day"].to_numpy(),
            late["known_day"].to_numpy(),
            late["amount"].to_numpy(),
        )
        return {
            "billings_usd": everything["billings_usd"],
            "revenue_usd": _by_day(3, n, rev["currency"].to_numpy(), rev["day"].to_numpy(), rev["amount"].to_numpy()),
            "cash_collected_usd": _by_day(
                3, n, cash["currency"].to_numpy(), cash["day"].to_numpy(), cash["amount"].to_numpy()
            ),
            "open_ar_usd": everything["open_ar_usd"] + pending,
        }


def compute_truth(
    state: State, registry: Registry, start: dt.date, n_customers: int, customer_keys: np.ndarray
) -> Truth:
    n = state.last_day + 1
    dates = [start + dt.timedelta(days=i) for i in range(n)]
    fx = state.table("fx").filter(pl.col("day") < n).sort("currency", "day")
    rate = fx["rate_micro"].to_numpy().reshape(3, n)

    codes, delinquent = customer_states(state, registry, n_customers, n)
    prev = np.concatenate([states_before_first_day(state, registry, n_customers)[:, None], codes[:, :-1]], axis=1)
    counts = {
        "active_customers": (codes == ACTIVE).sum(axis=0),
        "new_customers": ((codes == ACTIVE) & np.isin(prev, [PROSPECT, ONBOARDING, CHURNED])).sum(axis=0),
        "churned_customers": ((codes == CHURNED) & (prev != CHURNED)).sum(axis=0),
        "delinquent_customers": delinquent.sum(axis=0),
    }

    spells = contract_intervals(state, n).filter(pl.col("to_status").is_in(list(LIVE_CODES.values())))
    mrr = _interval_sum(
        3,
        n,
        spells["currency"].to_numpy(),
        spells["day"].to_numpy(),
        spells["stop"].to_numpy(),
        spells["mrr"].to_numpy(),
    )
    contracts = state.table("contracts")
    bookings = _by_day(
        3, n, contracts["currency"].to_numpy(), contracts["signed_day"].to_numpy(), contracts["tcv"].to_numpy()
    )
    opps = state.table("opps").join(state.table("opp_closes"), on="opp", how="left", suffix="_closed")
    closed_day = opps["day"].fill_null(n).to_numpy()
    pipeline = _interval_sum(
        3, n, opps["currency"].to_numpy(), opps["created_day"].to_numpy(), closed_day, opps["amount"].to_numpy()
    )
    won = state.table("opp_closes").filter(pl.col("won"))
    counts["opportunities_won"] = _by_day(1, n, np.zeros(won.height, dtype=np.int64), won["day"].to_numpy())[0]
    counts.update(_marketing(state, registry, n))

    money_stock = {
        "mrr_usd": to_usd_cents(mrr, rate),
        "bookings_usd": to_usd_cents(bookings, rate),
        "pipeline_usd": to_usd_cents(pipeline, rate),
    }
    money_stock["arr_usd"] = 12 * money_stock["mrr_usd"]

    ledger = _Money(state, n)
    late_kpis = ("billings_usd", "revenue_usd", "cash_collected_usd", "open_ar_usd")

    def known_series(known_by: int) -> dict[str, np.ndarray]:
        flows = ledger.flows(known_by)
        return {k: to_usd_cents(flows[k], rate) for k in late_kpis}

    first = {k: to_usd_cents(v, rate) for k, v in ledger.first_known().items()}
    final = known_series(n - 1)

    def cents_frame(values: dict[str, np.ndarray], known_at: list[dt.date] | None = None) -> pl.DataFrame:
        frames = []
        for kpi, arr in values.items():
            frames.append(
                pl.DataFrame(
                    {
                        "date": dates,
                        "kpi": kpi,
                        "value": [Decimal(int(v)).scaleb(-2) for v in arr],
                        **({"known_at": known_at} if known_at is not None else {}),
                    },
                    schema_overrides={"value": VALUE_TYPE},
                )
            )
        return pl.concat(frames)

    all_final = {**{k: v * 100 for k, v in counts.items()}, **money_stock, **final}
    order = {name: i for i, name in enumerate(registry.kpi_names)}
    missing = set(order) - set(all_final)
    if missing:
        raise ValueError(f"the truth does not compute registry KPIs {sorted(missing)}")
    kpi_daily = cents_frame({k: all_final[k] for k in registry.kpi_names})

    # History: first-known versions, then a version for each day a late record changed a value.
    first_known = {k: (first[k] if k in first else all_final[k]) for k in registry.kpi_names}
    history = [cents_frame(first_known, known_at=dates)]
    latest = {k: first_known[k].copy() for k in late_kpis}
    arrivals = sorted(
        set(ledger.rev.filter((pl.col("known_day") > pl.col("day")) & (pl.col("known_day") < n))["known_day"])
        | set(ledger.settle.filter((pl.col("known_day") > pl.col("day")) & (pl.col("known_day") < n))["known_day"])
    )
    for arrival in arrivals:
        series = known_series(arrival)
        for kpi in late_kpis:
            changed = np.flatnonzero(series[kpi][:arrival] != latest[kpi][:arrival])
            if len(changed):
                latest[kpi][changed] = series[kpi][changed]
                history.append(
                    pl.DataFrame(
                        {
                            "date": [dates[i] for i in changed],
                            "kpi": kpi,
                            "value": [Decimal(int(series[kpi][i])).scaleb(-2) for i in changed],
                            "known_at": dates[arrival],
                        },
                        schema_overrides={"value": VALUE_TYPE},
                    )
                )
    kpi_history = pl.concat(history).sort("date", "kpi", "known_at")
    kpi_daily = kpi_daily.with_columns(pl.col("kpi").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
    kpi_daily = kpi_daily.sort("date", "_o").drop("_o")

    states = pl.DataFrame(
        {
            "date": np.repeat(np.array(dates, dtype="datetime64[D]"), n_customers),
            "customer_key": np.tile(customer_keys, n),
            "state": STATE_NAMES[codes.T.ravel()],
            "is_delinquent": delinquent.T.ravel(),
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    return Truth(kpi_daily=kpi_daily, kpi_daily_history=kpi_history, customer_states=states)


def _marketing(state: State, registry: Registry, n: int) -> dict[str, np.ndarray]:
    leads = state.table("leads").with_columns(business=~pl.col("domain").is_in(list(registry.free_mail_domains)))
    qualify = (
        state.table("lead_scores")
        .filter((pl.col("score") >= registry.mql_score_threshold) & (pl.col("day") < n))
        .group_by("lead")
        .agg(qualify_day=pl.col("day").min())
    )
    accepts = state.table("lead_accepts").filter(pl.col("day") < n).group_by("lead").agg(accept_day=pl.col("day").min())
    people = (
        leads.join(qualify, on="lead", how="left")
        .join(accepts, on="lead", how="left")
        .with_columns(qualify_day=pl.when(pl.col("business")).then(pl.col("qualify_day")))
        .group_by("person")
        .agg(mql_day=pl.col("qualify_day").min(), accept_day=pl.col("accept_day").min())
    )
    mql = people["mql_day"].drop_nulls().to_numpy()
    sql = people.filter(pl.col("mql_day").is_not_null() & pl.col("accept_day").is_not_null())
    sql_day = np.maximum(sql["mql_day"].to_numpy(), sql["accept_day"].to_numpy())
    zeros = np.zeros
    return {
        "mqls": _by_day(1, n, zeros(len(mql), dtype=np.int64), mql)[0],
        "sqls": _by_day(1, n, zeros(len(sql_day), dtype=np.int64), sql_day)[0],
    }

"""Small hand-made mart frames for the churn model's tests: every table the features read, two customers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

D0 = dt.date(2025, 3, 1)


def day(n: int) -> dt.date:
    return D0 + dt.timedelta(days=n)


def states(customers: dict[str, str], first: int, last: int) -> pl.DataFrame:
    rows = [
        (c, day(n), s, int(s == "active"), int(s == "paused"))
        for c, s in customers.items()
        for n in range(first, last + 1)
    ]
    return pl.DataFrame(
        rows,
        schema=["customer_id", "date_day", "state", "live_contract_count", "paused_contract_count"],
        orient="row",
    )


USAGE_SCHEMA = {
    "customer_id": pl.String,
    "event_date": pl.Date,
    "user_id": pl.String,
    "feature": pl.String,
    "known_date": pl.Date,
    "usage_events": pl.Int64,
}
SEATS_SCHEMA = {
    "customer_id": pl.String,
    "event_date": pl.Date,
    "known_date": pl.Date,
    "seats_assigned": pl.Int64,
    "seats_revoked": pl.Int64,
}


def usage() -> pl.DataFrame:
    """A's two users use reports every day and workflows every other day; B's one user reports, less lately."""
    rows = [
        (c, day(n), u, f, day(n + 1), events)
        for n in range(-90, 0)
        for c, u, f, events in (
            ("A", "a1", "reports", 5),
            ("A", "a2", "reports", 2),
            ("A", "a1", "workflows", 1 if n % 2 else 0),
            ("B", "b1", "reports", 3 if n < -20 else 1),
        )
        if events
    ]
    return pl.DataFrame(rows, schema=USAGE_SCHEMA, orient="row")


def seats() -> pl.DataFrame:
    rows = [("A", day(-100), day(-99), 3, 0), ("B", day(-100), day(-99), 2, 0), ("B", day(-30), day(-29), 0, 1)]
    return pl.DataFrame(rows, schema=SEATS_SCHEMA, orient="row")


def marts() -> dict[str, pl.DataFrame]:
    """Customer A: live since before the window, one invoice paid late; B: live, an invoice left open, its
    usage falling."""
    money = pl.Decimal(18, 2)
    return {
        "states": states({"A": "active", "B": "active"}, -120, 60),
        "contracts": pl.DataFrame(
            [
                ("A", "K1", "USD", Decimal("100"), Decimal("1200"), day(-200), day(-190)),
                ("B", "K2", "EUR", Decimal("50"), Decimal("600"), day(-150), day(-140)),
            ],
            schema={
                "customer_id": pl.String,
                "contract_id": pl.String,
                "currency_code": pl.String,
                "mrr_amount": money,
                "total_contract_value": money,
                "signed_date": pl.Date,
                "go_live_date": pl.Date,
            },
            orient="row",
        ),
        "contract_events": pl.DataFrame(
            [("A", "K1", "live", day(-190)), ("B", "K2", "live", day(-140))],
            schema=["customer_id", "contract_id", "to_status", "changed_date"],
            orient="row",
        ),
        "invoices": pl.DataFrame(
            [
                ("I1", "A", day(-60), day(-30), Decimal("100"), Decimal("100"), day(-60)),
                ("I2", "B", day(-50), day(-20), Decimal("50"), Decimal("55"), day(-50)),
            ],
            schema={
                "invoice_id": pl.String,
                "customer_id": pl.String,
                "invoice_date": pl.Date,
                "due_date": pl.Date,
                "invoice_amount": money,
                "invoice_amount_usd": pl.Decimal(38, 2),
                "loaded_partition": pl.Date,
            },
            orient="row",
        ),
        "settlements": pl.DataFrame(
            [("I1", day(-10), Decimal("100"), day(-10))],
            schema={"invoice_id": pl.String, "settled_on": pl.Date, "amount": money, "loaded_partition": pl.Date},
            orient="row",
        ),
        "opportunities": pl.DataFrame(
            [("A", Decimal("10"), day(-20), None, None)],
            schema={
                "customer_id": pl.String,
                "amount": money,
                "created_date": pl.Date,
                "closed_date": pl.Date,
                "is_won": pl.Boolean,
            },
            orient="row",
        ),
        "fx": pl.DataFrame(
            [(day(n), "EUR", Decimal("1.1")) for n in range(-200, 1)],
            schema={"rate_date": pl.Date, "currency_code": pl.String, "usd_per_unit": pl.Decimal(18, 6)},
            orient="row",
        ),
        "usage": usage(),
        "seats": seats(),
    }


def with_rows(base: dict[str, pl.DataFrame], table: str, rows: list[tuple[object, ...]]) -> dict[str, pl.DataFrame]:
    out = dict(base)
    out[table] = pl.concat([base[table], pl.DataFrame(rows, schema=base[table].schema, orient="row")])
    return out

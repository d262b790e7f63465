"""Ingestion contracts of the accounting exports (CSV text: mixed date formats, thousands separators)."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from quality.contracts.base import CURRENCIES, Alias, Contract
from registry.loader import load_registry

Money = Annotated[pl.Decimal, 18, 2]
Rate = Annotated[pl.Decimal, 18, 6]
# The formats the accounting system writes dates in (ISO, US, European, day-month-name).
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y")
# The accounting system's release 2025.1 renamed invoices.amount to gross_amount (and added po_number), from
# the business date the registry records for it: the one the simulated accounting system uses too.
RENAMING_RELEASE = load_registry().source_release("accounting", "2025.1")
INVOICE_AMOUNT_RENAMED = Alias("gross_amount", RENAMING_RELEASE.date)


class Invoices(pa.DataFrameModel):
    invoice_no: str
    customer_id: str
    contract_ref: str | None = pa.Field(nullable=True)
    invoice_date: pl.Date
    due_date: pl.Date
    currency: str = pa.Field(isin=CURRENCIES)
    amount: Money = pa.Field(gt=0)
    invoice_type: str = pa.Field(isin=["subscription", "services"])


class Payments(pa.DataFrameModel):
    payment_no: str
    invoice_no: str
    customer_id: str
    payment_date: pl.Date
    currency: str = pa.Field(isin=CURRENCIES)
    amount: Money = pa.Field(gt=0)
    method: str | None = pa.Field(nullable=True)


class CreditMemos(pa.DataFrameModel):
    memo_no: str
    invoice_no: str
    customer_id: str
    memo_date: pl.Date
    currency: str = pa.Field(isin=CURRENCIES)
    amount: Money = pa.Field(gt=0)
    reason: str | None = pa.Field(nullable=True)


class JournalLines(pa.DataFrameModel):
    journal_no: str
    line_no: pl.Int64 = pa.Field(gt=0)
    posting_date: pl.Date
    account: str
    account_name: str | None = pa.Field(nullable=True)
    debit: Money = pa.Field(ge=0)
    credit: Money = pa.Field(ge=0)
    currency: str = pa.Field(isin=CURRENCIES)
    reference: str | None = pa.Field(nullable=True)
    description: str | None = pa.Field(nullable=True)


class FxRates(pa.DataFrameModel):
    rate_date: pl.Date
    currency: str = pa.Field(isin=CURRENCIES)
    usd_per_unit: Rate = pa.Field(gt=0)


CONTRACTS = [
    Contract(
        "accounting",
        "invoices",
        Invoices,
        key=("invoice_no",),
        date_formats=DATE_FORMATS,
        amounts_with_separators=("amount",),
        aliases={"amount": (INVOICE_AMOUNT_RENAMED,)},
    ),
    Contract(
        "accounting",
        "payments",
        Payments,
        key=("payment_no",),
        date_formats=DATE_FORMATS,
        amounts_with_separators=("amount",),
        references={"invoice_no": ("invoices", "invoice_no")},
    ),
    Contract(
        "accounting",
        "credit_memos",
        CreditMemos,
        key=("memo_no",),
        date_formats=DATE_FORMATS,
        amounts_with_separators=("amount",),
        references={"invoice_no": ("invoices", "invoice_no")},
    ),
    Contract(
        "accounting",
        "journal_lines",
        JournalLines,
        key=("journal_no", "line_no"),
        date_formats=DATE_FORMATS,
        amounts_with_separators=("debit", "credit"),
    ),
    Contract("accounting", "fx_rates", FxRates, key=("rate_date", "currency"), date_formats=DATE_FORMATS),
]

"""Dirt, on purpose, and recorded: spoils a day's clean records the way real systems do.

Every defect is logged (system, table, key, column, kind, class). *noise* is a defect on a real record
that the pipeline must repair so the record still counts (case, whitespace, country spellings,
duplicates, naive or offset timestamps, number and date formats, late or re-exported rows);
*bogus* is a record that is not part of the business (orphans, missing required fields, impossible
amounts, junk emails), which the pipeline must quarantine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from source_systems.simulator.config import DirtRates
from source_systems.simulator.state import State, frame
from source_systems.simulator.world import COUNTRY_VARIANTS

DATE_FORMATS = ["%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y"]


@dataclass(frozen=True)
class Spec:
    key: tuple[str, ...]
    noise: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # kind -> (column, format of a fresh key for the bogus row, format of a dangling reference)
    bogus: dict[str, str] = field(default_factory=dict)
    bogus_key: str = ""
    orphan_ref: str = ""
    money: tuple[str, ...] = ()  # accounting money columns, integer cents in clean records
    dates: tuple[str, ...] = ()  # accounting date columns


SPECS: dict[str, Spec] = {
    "erp.customers": Spec(
        ("customer_no",),
        {"case_variant": ("customer_name",), "whitespace": ("customer_name",), "country_variant": ("country",)},
        {"null_required": "customer_name"},
        bogus_key="C9{:05d}",
    ),
    "erp.contracts": Spec(
        ("contract_no",),
        {},
        {"orphan_fk": "customer_no", "null_required": "customer_no", "bad_amount": "monthly_amount"},
        bogus_key="K9{:06d}",
        orphan_ref="C8{:05d}",
    ),
    "erp.sales_order_lines": Spec(
        ("line_id",),
        {},
        {"orphan_fk": "order_no", "bad_amount": "line_amount"},
        bogus_key="9{:07d}",
        orphan_ref="SO8{:06d}",
    ),
    "crm.accounts": Spec(
        ("Id",), {"case_variant": ("Name",), "whitespace": ("Name",), "country_variant": ("BillingCountry",)}
    ),
    "crm.contacts": Spec(
        ("Id",),
        {
            "case_variant": ("Email",),
            "whitespace": ("Email",),
            "naive_timestamp": ("CreatedDate",),
            "offset_timestamp": ("CreatedDate",),
        },
        {"orphan_fk": "AccountId", "null_required": "AccountId"},
        bogus_key="0039{:08d}",
        orphan_ref="0018{:08d}",
    ),
    "crm.leads": Spec(
        ("Id",),
        {
            "case_variant": ("Email",),
            "whitespace": ("Email",),
            "naive_timestamp": ("CreatedDate",),
            "offset_timestamp": ("CreatedDate",),
        },
        {"null_required": "LastName"},
        bogus_key="00Q9{:08d}",
    ),
    "crm.lead_history": Spec(
        ("Id",),
        {"naive_timestamp": ("CreatedDate",), "offset_timestamp": ("CreatedDate",)},
        {"orphan_fk": "LeadId"},
        bogus_key="0179{:08d}",
        orphan_ref="00Q8{:08d}",
    ),
    "crm.opportunities": Spec(
        ("Id",),
        {"naive_timestamp": ("CreatedDate",), "offset_timestamp": ("CreatedDate",)},
        {"orphan_fk": "AccountId", "null_required": "AccountId", "bad_amount": "Amount"},
        bogus_key="0069{:08d}",
        orphan_ref="0018{:08d}",
    ),
    "crm.opportunity_history": Spec(
        ("Id",),
        {"naive_timestamp": ("CreatedDate",), "offset_timestamp": ("CreatedDate",)},
        {"orphan_fk": "OpportunityId"},
        bogus_key="0089{:08d}",
        orphan_ref="0068{:08d}",
    ),
    "acct.invoices": Spec(
        ("invoice_no",),
        {"duplicate": (), "number_format": ("amount",), "date_format": ("invoice_date", "due_date")},
        {"null_required": "customer_id", "bad_amount": "amount"},
        bogus_key="INV-9{:06d}",
        money=("amount",),
        dates=("invoice_date", "due_date"),
    ),
    "acct.payments": Spec(
        ("payment_no",),
        {"duplicate": (), "number_format": ("amount",), "date_format": ("payment_date",)},
        {"orphan_fk": "invoice_no", "bad_amount": "amount"},
        bogus_key="PAY-9{:06d}",
        orphan_ref="INV-8{:06d}",
        money=("amount",),
        dates=("payment_date",),
    ),
    "acct.credit_memos": Spec(
        ("memo_no",),
        {"number_format": ("amount",), "date_format": ("memo_date",)},
        {"orphan_fk": "invoice_no"},
        bogus_key="CM-9{:06d}",
        orphan_ref="INV-8{:06d}",
        money=("amount",),
        dates=("memo_date",),
    ),
    "acct.journal_lines": Spec(
        ("journal_no", "line_no"),
        {"duplicate": (), "number_format": ("debit", "credit"), "date_format": ("posting_date",)},
        {"null_required": "account"},
        bogus_key="JE-9{:06d}",
        money=("debit", "credit"),
        dates=("posting_date",),
    ),
}


class DirtLog:
    def __init__(self, day: int) -> None:
        self.day = day
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def add(self, table: str, keys: list[str], column: str, kind: str, klass: str) -> None:
        system, name = table.split(".")
        self.rows.extend((system, name, k, column, kind, klass) for k in keys)

    def frame(self) -> pl.DataFrame:
        if not self.rows:
            return frame("dirt", day=[], system=[], table=[], key=[], column=[], kind=[], **{"class": []})
        cols = list(zip(*self.rows, strict=True))
        return frame(
            "dirt",
            day=[self.day] * len(self.rows),
            system=cols[0],
            table=cols[1],
            key=cols[2],
            column=cols[3],
            kind=cols[4],
            **{"class": cols[5]},
        )


def _keys(df: pl.DataFrame, spec: Spec, mask: np.ndarray) -> list[str]:
    idx = np.flatnonzero(mask)
    if len(spec.key) == 1:
        return df[spec.key[0]].gather(idx).cast(pl.String).to_list()
    parts = [df[k].gather(idx).cast(pl.String) for k in spec.key]
    return pl.select(pl.concat_str(parts, separator=":")).to_series().to_list()


def _format_money(cents: np.ndarray, thousands: np.ndarray) -> list[str]:
    out = []
    for c, t in zip(cents.tolist(), thousands.tolist(), strict=True):
        sign = "-" if c < 0 else ""
        units, rest = divmod(abs(int(c)), 100)
        out.append(f"{sign}{units:,}.{rest:02d}" if t else f"{sign}{units}.{rest:02d}")
    return out


def _shift_offset(canonical: str, hours: int) -> str:
    """'2024-03-05T10:00:00.000Z' -> the same instant written with a +HH:00 offset."""
    instant = dt.datetime.fromisoformat(canonical[:19])
    local = instant + dt.timedelta(hours=hours)
    sign = "+" if hours >= 0 else "-"
    return local.isoformat() + f"{sign}{abs(hours):02d}:00"


def spoil(
    table: str,
    df: pl.DataFrame,
    rates: DirtRates,
    rng: np.random.Generator,
    state: State,
    log: DirtLog,
    business_date: dt.date,
) -> pl.DataFrame:
    """Inject this table's defects into one day's clean rows and log each one."""
    spec = SPECS.get(table)
    if table.startswith("crm.") and "SystemModstamp" not in df.columns:
        stamp = "LastModifiedDate" if "LastModifiedDate" in df.columns else "CreatedDate"
        df = df.with_columns(SystemModstamp=pl.col(stamp))
    if "_name_variant" in df.columns:
        log.add(
            table,
            _keys(df, spec, df["_name_variant"].to_numpy()) if spec else [],
            "customer_name",
            "name_variant",
            "noise",
        )
        df = df.drop("_name_variant")
    junk = np.zeros(df.height, bool)
    if "_bogus" in df.columns:
        junk = df["_bogus"].is_not_null().to_numpy()
        if spec:
            log.add(table, _keys(df, spec, junk), "Email", "invalid_email", "bogus")
        df = df.drop("_bogus")
    if spec is None:
        return df
    n = df.height
    if n == 0:
        return df
    # ---- bogus rows: copies of real rows, corrupted, under fresh keys
    extra = []
    for kind, column in spec.bogus.items():
        k = int(rng.binomial(n, getattr(rates, kind)))
        if k == 0:
            continue
        real = np.flatnonzero(~junk)  # copy real rows only, so each bogus row has exactly one defect
        if len(real) == 0:
            continue
        rows = df[real[rng.integers(0, len(real), size=k)]]
        ids = state.next_ids(f"bogus:{table}", k)
        key_col = spec.key[0]
        new_keys = [spec.bogus_key.format(i) for i in ids]
        rows = rows.with_columns(pl.Series(key_col, new_keys).cast(rows.schema[key_col]))
        if kind == "orphan_fk":
            refs = [spec.orphan_ref.format(i) for i in state.next_ids(f"orphan:{table}", k)]
            rows = rows.with_columns(pl.Series(column, refs))
        elif kind == "null_required":
            rows = rows.with_columns(pl.lit(None, dtype=rows.schema[column]).alias(column))
        elif kind == "bad_amount":
            neg = rng.random(k) < 0.5
            vals = rows[column].to_numpy() * np.where(neg, -1, 0)
            rows = rows.with_columns(pl.Series(column, vals).cast(rows.schema[column]))
        extra.append(rows)
        log.add(table, _keys(rows, spec, np.ones(k, bool)), column, kind, "bogus")
    if extra:
        df = pl.concat([df, *extra], how="vertical_relaxed")
    n = df.height
    # ---- noise on real records (bogus rows may carry noise too, which is fine: they are quarantined)
    stamped: dict[str, np.ndarray] = {}  # one timestamp defect per value at most
    for kind, columns in spec.noise.items():
        rate = getattr(rates, kind)
        if kind == "duplicate":
            mask = rng.random(n) < rate
            if mask.any():
                log.add(table, _keys(df, spec, mask), "*", "duplicate", "noise")
                df = pl.concat([df, df.filter(pl.Series(mask))])
            continue
        if kind in {"number_format", "date_format"}:
            continue  # applied when rendering the CSV below
        for column in columns:
            mask = rng.random(df.height) < rate
            if not mask.any():
                continue
            mask &= df[column].is_not_null().to_numpy()
            if kind.endswith("_timestamp"):
                mask &= ~stamped.get(column, np.zeros(df.height, bool))
                stamped[column] = stamped.get(column, np.zeros(df.height, bool)) | mask
            if not mask.any():
                continue
            values = df[column].to_list()
            for i in np.flatnonzero(mask):
                v = values[i]
                if kind == "case_variant":
                    values[i] = v.upper() if rng.random() < 0.5 else v.lower()
                elif kind == "whitespace":
                    values[i] = "  " + v + " " if rng.random() < 0.5 else v + "   "
                elif kind == "country_variant":
                    values[i] = str(rng.choice(COUNTRY_VARIANTS[v]))
                elif kind == "naive_timestamp":
                    values[i] = v.replace("T", " ").replace(".000Z", "")
                elif kind == "offset_timestamp":
                    values[i] = _shift_offset(v, int(rng.choice([-5, -4, 1, 2, 9])))
            df = df.with_columns(pl.Series(column, values, dtype=pl.String))
            log.add(table, _keys(df, spec, mask), column, kind, "noise")
    if table.startswith("acct."):
        df = _render_accounting(table, df, spec, rates, rng, log, business_date)
    return df


def _render_accounting(
    table: str,
    df: pl.DataFrame,
    spec: Spec,
    rates: DirtRates,
    rng: np.random.Generator,
    log: DirtLog,
    business_date: dt.date,
) -> pl.DataFrame:
    """Accounting exports are text: amounts with optional thousands separators, dates in mixed formats."""
    n = df.height
    if table == "acct.journal_lines":
        late = (df["posting_date"] < business_date.isoformat()).to_numpy()
        if late.any():
            log.add(table, _keys(df, spec, late), "posting_date", "late_arrival", "noise")
    for column in spec.money:
        cents = df[column].fill_null(-(10**15)).to_numpy()
        mask = (rng.random(n) < rates.number_format) & (np.abs(cents) >= 100_000) & (cents > -(10**15))
        text = _format_money(cents, mask)
        values = [None if c == -(10**15) else t for c, t in zip(cents.tolist(), text, strict=True)]
        df = df.with_columns(pl.Series(column, values, dtype=pl.String))
        if mask.any():
            log.add(table, _keys(df, spec, mask), column, "number_format", "noise")
    for column in spec.dates:
        mask = rng.random(n) < rates.date_format
        fmt = rng.integers(0, len(DATE_FORMATS), size=n)
        values = df[column].to_list()
        for i in np.flatnonzero(mask):
            value = values[i]
            if value is not None:
                values[i] = dt.date.fromisoformat(value).strftime(DATE_FORMATS[int(fmt[i])])
        df = df.with_columns(pl.Series(column, values, dtype=pl.String))
        if mask.any():
            log.add(table, _keys(df, spec, mask), column, "date_format", "noise")
    return df.with_columns(pl.all().cast(pl.String))

"""The simulation's dynamic state: entities in flight, events planned for later days, and the ledger.

The ledger is the business as it really happened (contract transitions, invoices, settlements, revenue
postings, opportunities, lead scores), kept compactly in integers so the truth can be computed from it
without ever reading the dirty records the systems emitted. Everything is saved as Parquet between
``simulate`` calls; a continued simulation therefore sees exactly what a one-shot run would have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

# Each table: column -> dtype. Declared once so empty tables, appends and saves agree.
SCHEMAS: dict[str, dict[str, Any]] = {
    "contracts": {
        "contract": pl.Int64,
        "bill": pl.Int64,
        "customer": pl.Int64,
        "currency": pl.Int64,
        "product": pl.Int64,
        "services_product": pl.Int64,
        "mrr": pl.Int64,
        "services": pl.Int64,
        "term": pl.Int64,
        "tcv": pl.Int64,
        "signed_day": pl.Int64,
        "live_day": pl.Int64,
        "end_day": pl.Int64,
        "status": pl.Int64,
    },
    "status_changes": {"contract": pl.Int64, "day": pl.Int64, "from_status": pl.Int64, "to_status": pl.Int64},
    "invoices": {
        "invoice": pl.Int64,
        "contract": pl.Int64,
        "bill": pl.Int64,
        "customer": pl.Int64,
        "currency": pl.Int64,
        "amount": pl.Int64,
        "issue_day": pl.Int64,
        "due_day": pl.Int64,
        "kind": pl.Int64,
    },
    # kind: 0 payment, 1 credit memo; known_day > day when a payment was held back from the day's export
    "settlements": {
        "invoice": pl.Int64,
        "day": pl.Int64,
        "amount": pl.Int64,
        "currency": pl.Int64,
        "kind": pl.Int64,
        "known_day": pl.Int64,
    },
    "revenue": {"day": pl.Int64, "known_day": pl.Int64, "currency": pl.Int64, "amount": pl.Int64},
    "opps": {
        "opp": pl.Int64,
        "account": pl.Int64,
        "currency": pl.Int64,
        "amount": pl.Int64,
        "created_day": pl.Int64,
        "close_day": pl.Int64,
        "won": pl.Boolean,
        "product": pl.Int64,
        "services_product": pl.Int64,
        "mrr": pl.Int64,
        "services": pl.Int64,
        "term": pl.Int64,
    },
    "opp_closes": {"opp": pl.Int64, "day": pl.Int64, "won": pl.Boolean},
    "leads": {"lead": pl.Int64, "person": pl.Int64, "domain": pl.String, "created_day": pl.Int64},
    "lead_scores": {"lead": pl.Int64, "day": pl.Int64, "score": pl.Int64},
    "lead_accepts": {"lead": pl.Int64, "day": pl.Int64},
    "fx": {"day": pl.Int64, "currency": pl.Int64, "rate_micro": pl.Int64},
    "dirt": {
        "day": pl.Int64,
        "system": pl.String,
        "table": pl.String,
        "key": pl.String,
        "column": pl.String,
        "kind": pl.String,
        "class": pl.String,
    },
    # Events planned for a later day; `day` is when they happen.
    "pending_opp_stages": {
        "day": pl.Int64,
        "opp": pl.Int64,
        "old": pl.String,
        "new": pl.String,
        "sec": pl.Int64,
    },
    "pending_settlements": {
        "day": pl.Int64,
        "invoice": pl.Int64,
        "kind": pl.Int64,
        "amount": pl.Int64,
        "held_back": pl.Boolean,
        "arrival": pl.Int64,
        "sec": pl.Int64,
    },
    "pending_lead_events": {
        "day": pl.Int64,
        "lead": pl.Int64,
        "field": pl.String,
        "old": pl.String,
        "new": pl.String,
        "sec": pl.Int64,
    },
    "pending_late_gl": {
        "day": pl.Int64,
        "posting_day": pl.Int64,
        "currency": pl.Int64,
        "amount": pl.Int64,
    },
    # Payments rows of a day's export that a corrected _v2 re-export will deliver on `day`.
    "pending_v2": {
        "day": pl.Int64,
        "export_day": pl.Int64,
        "line": pl.Int64,
        "held_back": pl.Boolean,
        "payment_no": pl.String,
        "invoice_no": pl.String,
        "customer_id": pl.String,
        "payment_date": pl.String,
        "currency": pl.String,
        "amount": pl.String,
        "method": pl.String,
    },
    "persons": {
        "person": pl.Int64,
        "first": pl.String,
        "last": pl.String,
        "email": pl.String,
        "company": pl.String,
        "created_day": pl.Int64,
    },
    # Open invoices by bill-to for services invoices at go-live and expansions.
    "customer_flags": {"customer": pl.Int64, "ever_active": pl.Boolean},
    # Every CRM contact (a user of the product once their customer is live), by account.
    "contacts": {"contact": pl.Int64, "account": pl.Int64, "created_day": pl.Int64},
    # The latent health of every customer now (simulator/health.py), and its path while under contract.
    "health": {"customer": pl.Int64, "h": pl.Float64, "decline_left": pl.Int64, "decline_rate": pl.Float64},
    "health_daily": {"day": pl.Int64, "customer": pl.Int64, "h": pl.Float64},
    # Why each cancellation request or termination happened (health.CAUSES).
    "churn_causes": {"contract": pl.Int64, "day": pl.Int64, "to_status": pl.Int64, "cause": pl.Int64},
    # The product (source_systems/product): its users and their seats, each customer's spell of use,
    # the usage ledger (events that count, by the day they count for and the day they became known),
    # seat changes likewise, the usage events' times as runs, and delivered lines planned for a later day.
    "product_users": {
        "user": pl.Int64,
        "account": pl.Int64,
        "customer": pl.Int64,
        "created_day": pl.Int64,
        "seated": pl.Boolean,
        "stitched_known": pl.Int64,  # day the user's browser first delivered an event with the user's id
    },
    "product_customers": {"customer": pl.Int64, "episode_start": pl.Int64},
    "usage": {"day": pl.Int32, "known_day": pl.Int32, "user": pl.Int64, "event_type": pl.Int16, "events": pl.Int32},
    "seats": {"day": pl.Int32, "known_day": pl.Int32, "customer": pl.Int64, "delta": pl.Int32},
    # the same events' times, as runs of one user's events of a day known the same day, no two of a run more
    # than RUN_GAP_MS apart (simulator/events.py): the sessions of any longer gap are unions of whole runs
    "usage_runs": {
        "day": pl.Int32,
        "known_day": pl.Int32,
        "user": pl.Int64,
        "first_ms": pl.Int32,  # milliseconds into the day
        "last_ms": pl.Int32,
        "events": pl.Int32,
    },
    "pending_events": {
        "day": pl.Int64,  # when the line is delivered
        "receive_day": pl.Int64,
        "hour": pl.Int64,
        "collector": pl.Int64,
        "sort_ms": pl.Int64,
        "seq": pl.Int64,
        "flag": pl.Int64,  # 0 an event, 1 a truncated copy, 2 a malformed line
        "line": pl.String,
    },
    "billto_created": {"bill": pl.Int64, "day": pl.Int64},
}

LEDGER_TABLES = (
    "contracts",
    "status_changes",
    "invoices",
    "settlements",
    "revenue",
    "opps",
    "opp_closes",
    "leads",
    "lead_scores",
    "lead_accepts",
    "fx",
    "dirt",
    "billto_created",
)


def empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[name])


def frame(name: str, **columns: Any) -> pl.DataFrame:
    """A table chunk with the declared schema (numpy arrays or lists per column)."""
    schema = SCHEMAS[name]
    return pl.DataFrame({c: columns[c] for c in schema}, schema=schema)


@dataclass
class State:
    """Mutable simulation state. ``last_day`` is the index of the last simulated day (-1: none yet)."""

    last_day: int = -1
    counters: dict[str, int] = field(default_factory=dict)
    fx_micro: list[int] = field(default_factory=lambda: [1_000_000, 1_085_000, 1_270_000])
    tables: dict[str, list[pl.DataFrame]] = field(default_factory=dict)

    def next_ids(self, name: str, n: int) -> np.ndarray:
        """Reserve ``n`` consecutive integer ids of a sequence (1-based)."""
        start = self.counters.get(name, 0)
        self.counters[name] = start + n
        return np.arange(start + 1, start + n + 1, dtype=np.int64)

    def append(self, name: str, chunk: pl.DataFrame) -> None:
        if chunk.height:
            self.tables.setdefault(name, []).append(chunk)

    def table(self, name: str) -> pl.DataFrame:
        """The whole table, compacted into one chunk (cheap to call repeatedly)."""
        chunks = self.tables.get(name) or [empty(name)]
        if len(chunks) > 1:
            merged = pl.concat(chunks, how="vertical", rechunk=True)
            self.tables[name] = [merged]
            return merged
        return chunks[0]

    def replace(self, name: str, df: pl.DataFrame) -> None:
        self.tables[name] = [df]

    def take_pending(self, name: str, day: int) -> pl.DataFrame:
        """Remove and return the events of ``name`` planned for ``day``."""
        df = self.table(name)
        if df.height == 0:
            return df
        mask = df["day"].to_numpy() == day
        if not mask.any():
            return df.clear()
        self.replace(name, df.filter(~pl.Series(mask)))
        return df.filter(pl.Series(mask))

    # --- persistence ---
    def save(self, directory: Path, config_json: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in SCHEMAS:
            self.table(name).write_parquet(directory / f"{name}.parquet", statistics=False)
        meta = {
            "last_day": self.last_day,
            "counters": dict(sorted(self.counters.items())),
            "fx_micro": self.fx_micro,
            "config": json.loads(config_json),
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> tuple[State, dict[str, Any]]:
        meta = json.loads((directory / "meta.json").read_text())
        state = cls(last_day=meta["last_day"], counters=meta["counters"], fx_micro=meta["fx_micro"])
        for name in SCHEMAS:
            path = directory / f"{name}.parquet"
            state.tables[name] = [pl.read_parquet(path) if path.exists() else empty(name)]
        return state, meta["config"]

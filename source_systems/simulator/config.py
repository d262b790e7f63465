"""Simulation parameters: size, seed, window and the rates of everything that goes wrong on purpose."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class DirtRates:
    """Probability per eligible record of each injected defect (0 turns a kind off)."""

    case_variant: float = 0.04
    whitespace: float = 0.04
    country_variant: float = 0.25
    duplicate: float = 0.01
    number_format: float = 0.3
    date_format: float = 0.3
    naive_timestamp: float = 0.05
    offset_timestamp: float = 0.05
    invalid_email: float = 0.01
    orphan_fk: float = 0.004
    null_required: float = 0.004
    bad_amount: float = 0.004
    held_back_payment: float = 0.02  # omitted from a day's export, delivered by a corrected _v2 re-export
    late_journal: float = 0.6  # chance per currency and month of a late adjusting entry after the close
    # The product's event stream (source_systems/product): per event unless said otherwise.
    event_duplicate: float = 0.005  # delivered again, hours later (at-least-once)
    event_offline: float = 0.08  # per mobile session: sent when the device is back online, up to 72 h later
    event_clock_skew: float = 0.02  # per device: its clock is off by minutes to days
    event_bot: float = 0.01  # crawler traffic, relative to the real events
    event_malformed: float = 0.0005  # junk lines from a broken client, relative to the real events
    event_truncated: float = 0.02  # per object: its last line is cut off (the event is delivered again)
    event_delayed_hour: float = 0.2  # per day: one late-evening hour of one collector is delivered next day
    event_pii: float = 0.03  # per free-text property: someone typed an email address into it


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines the simulated systems: the same config gives the same bytes."""

    seed: int = 42
    scale: float = 0.05
    start: dt.date = dt.date(2025, 1, 1)
    # From this business date the invoices export gains a column and renames another (schema drift). None: the
    # date the registry records for that accounting release, which the ingestion contract knows too; a date
    # here simulates a release nobody announced.
    drift_date: dt.date | None = None
    dirt: DirtRates = field(default_factory=DirtRates)
    # A marketing campaign: on this business date leads arrive this many times as often (a real spike).
    lead_spike_date: dt.date | None = None
    lead_spike_factor: float = 1.0
    # The share of customer hierarchies that are already customers, with a live contract, on the first day.
    installed_base: float = 0.4
    # The product's event stream; tests that never read it switch it off to save time.
    product_events: bool = True
    # From these business dates the product's tracking changes: a property is added, an event renamed.
    event_property_date: dt.date | None = None
    event_rename_date: dt.date | None = None

    @property
    def effective_property_date(self) -> dt.date:
        return self.event_property_date or (self.start + dt.timedelta(days=25))

    @property
    def effective_rename_date(self) -> dt.date:
        return self.event_rename_date or (self.start + dt.timedelta(days=40))

    def to_json(self) -> str:
        data = asdict(self)
        for name in _DATES:
            data[name] = data[name].isoformat() if data[name] else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        data: dict[str, Any] = json.loads(text)
        for name in _DATES:
            value = data.get(name)
            data[name] = dt.date.fromisoformat(value) if value else None
        data["dirt"] = DirtRates(**data["dirt"])
        return cls(**data)

    def with_(self, **changes: Any) -> SimConfig:
        return replace(self, **changes)


_DATES = ("start", "drift_date", "lead_spike_date", "event_property_date", "event_rename_date")

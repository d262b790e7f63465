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


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines the simulated systems: the same config gives the same bytes."""

    seed: int = 42
    scale: float = 0.05
    start: dt.date = dt.date(2025, 1, 1)
    # From this business date the invoices export gains a column and renames another (schema drift).
    drift_date: dt.date | None = None
    dirt: DirtRates = field(default_factory=DirtRates)
    # A marketing campaign: on this business date leads arrive this many times as often (a real spike).
    lead_spike_date: dt.date | None = None
    lead_spike_factor: float = 1.0

    @property
    def effective_drift_date(self) -> dt.date:
        return self.drift_date or (self.start + dt.timedelta(days=20))

    def to_json(self) -> str:
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["drift_date"] = self.drift_date.isoformat() if self.drift_date else None
        data["lead_spike_date"] = self.lead_spike_date.isoformat() if self.lead_spike_date else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        data: dict[str, Any] = json.loads(text)
        data["start"] = dt.date.fromisoformat(data["start"])
        data["drift_date"] = dt.date.fromisoformat(data["drift_date"]) if data["drift_date"] else None
        data["dirt"] = DirtRates(**data["dirt"])
        spike = data.get("lead_spike_date")
        data["lead_spike_date"] = dt.date.fromisoformat(spike) if spike else None
        return cls(**data)

    def with_(self, **changes: Any) -> SimConfig:
        return replace(self, **changes)

"""The volume breaker of the event stream, per delivered hour: an hour far outside the range of the same hour
of the day over the recent days halts the micro-batch's downstream (a flood of bot traffic, a collector that
wrote almost nothing).

Usage has a daily shape (working hours) and a weekly one (weekends a tenth of weekdays), so an hour is
judged against the same hour of the day over the registry's ``volume_breaker.lookback_days``: above
``max_ratio`` times the largest is a flood (at ``min_rows`` lines or more); below the smallest divided by
``max_ratio`` is a hole, when the smallest reaches ``min_rows``. The lines counted are the ledger's (every
line delivered, quarantined ones too), so an hour whose held-back object arrives later grows to its size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from registry.loader import Registry

ALLOW_TAG = "dataops/allow_volume_spike"  # the same run tag as the tables' breaker: "product.events" or "all"
NAME = "product.events"


@dataclass
class HourVolumes:
    checked: dict[str, tuple[int, tuple[int, int] | None]] = field(default_factory=dict)  # hour -> lines, range
    tripped: dict[str, str] = field(default_factory=dict)
    allowed: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.tripped


def check_hours(
    ledger: pl.DataFrame, hours: list[str], registry: Registry, allow: set[str] | None = None
) -> HourVolumes:
    """Judge each of ``hours`` (``YYYY-MM-DDTHH``) against the ledger's same hours of the recent days."""
    breaker = registry.volume_breaker
    lines = dict(ledger.group_by("hour").agg(pl.col("lines").sum()).iter_rows())
    expected = {s.date: s.reason for s in breaker.expected_spikes if s.table == NAME}
    out = HourVolumes()
    for hour in sorted(set(hours)):
        at = dt.datetime.strptime(hour, "%Y-%m-%dT%H")
        history = [
            lines[key]
            for key in (
                (at - dt.timedelta(days=k)).strftime("%Y-%m-%dT%H") for k in range(1, breaker.lookback_days + 1)
            )
            if lines.get(key)
        ]
        rows = int(lines.get(hour, 0))
        judged = len(history) >= breaker.min_history_days
        low, high = (min(history), max(history)) if judged else (0, 0)
        out.checked[hour] = (rows, (low, high) if judged else None)
        why = None
        if judged and rows >= breaker.min_rows and rows > high * breaker.max_ratio:
            why = f"{rows} lines, above {breaker.max_ratio:g}x the same hour's recent range {low}..{high}"
        elif judged and low >= breaker.min_rows and rows < low / breaker.max_ratio:
            why = f"{rows} lines, below 1/{breaker.max_ratio:g} of the same hour's recent range {low}..{high}"
        if not why:
            continue
        if at.date() in expected:
            out.allowed[hour] = f"{why}; expected: {expected[at.date()]}"
        elif allow and (NAME in allow or "all" in allow):
            out.allowed[hour] = f"{why}; let through by the run tag {ALLOW_TAG}"
        else:
            out.tripped[hour] = why
    return out

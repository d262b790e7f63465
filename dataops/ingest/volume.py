"""The volume circuit breaker: a partition whose extracted volume is far outside its recent range halts
the run before publishing, unless the spike is expected (registry) or explicitly let through (run tag).

Recent range: the smallest and largest rows per partition over the previous ``lookback_days`` days that had
data (35 by default, so a monthly cycle such as month-start billing is part of the range). A partition trips
the breaker when it is more than ``max_ratio`` times the largest (a flood) and at least ``min_rows``, or,
for a table that reliably has at least ``min_rows`` a day, less than the smallest divided by ``max_ratio``
(an extract that came back empty).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from dataops.core.warehouse import table_exists
from quality.contracts import Contract
from registry.loader import Registry

ALLOW_TAG = "dataops/allow_volume_spike"  # run tag: table names (system.table), comma separated, or "all"


@dataclass
class VolumeOutcome:
    table: str
    checked: dict[str, tuple[int, tuple[int, int] | None]]  # day -> (rows, recent range)
    tripped: dict[str, str]  # day -> why
    allowed: dict[str, str]  # day -> why it was let through

    @property
    def passed(self) -> bool:
        return not self.tripped


def partition_counts(
    conn: duckdb.DuckDBPyConnection, contract: Contract, start: dt.date, end: dt.date
) -> dict[dt.date, int]:
    table = f"{contract.system}__{contract.table}"
    counts: dict[dt.date, int] = {}
    for schema in ("raw", "quarantine"):
        if not table_exists(conn, schema, table):
            continue
        for day, rows in conn.execute(
            f"select _partition, count(*) from {schema}.{table} where _partition between ? and ? group by 1",
            [start, end],
        ).fetchall():
            counts[day] = counts.get(day, 0) + int(rows)
    return counts


def check_volume(
    conn: duckdb.DuckDBPyConnection,
    contract: Contract,
    start: dt.date,
    end: dt.date,
    registry: Registry,
    allow: set[str] | None = None,
    only: set[dt.date] | None = None,
) -> VolumeOutcome:
    """The breaker over start..end, or over the days of it in ``only`` (the days a load replaced: a day
    between two loaded windows that was never landed has no rows to judge yet)."""
    breaker = registry.volume_breaker
    counts = partition_counts(conn, contract, start - dt.timedelta(days=breaker.lookback_days), end)
    expected = {(s.table, s.date): s.reason for s in breaker.expected_spikes}
    allow = allow or set()
    outcome = VolumeOutcome(contract.name, {}, {}, {})
    day = start
    while day <= end:
        if only is not None and day not in only:
            day += dt.timedelta(days=1)
            continue
        history = [
            counts[d]
            for d in (day - dt.timedelta(days=k) for k in range(1, breaker.lookback_days + 1))
            if counts.get(d)
        ]
        rows = counts.get(day, 0)
        judged = len(history) >= breaker.min_history_days
        low, high = (min(history), max(history)) if judged else (0, 0)
        outcome.checked[day.isoformat()] = (rows, (low, high) if judged else None)
        why = None
        if judged and rows >= breaker.min_rows and rows > high * breaker.max_ratio:
            why = f"{rows} rows, above {breaker.max_ratio:g}x the recent range {low}..{high}"
        elif judged and low >= breaker.min_rows and rows < low / breaker.max_ratio:
            why = f"{rows} rows, below 1/{breaker.max_ratio:g} of the recent range {low}..{high}"
        if why:
            if (contract.name, day) in expected:
                outcome.allowed[day.isoformat()] = f"{why}; expected: {expected[(contract.name, day)]}"
            elif contract.name in allow or "all" in allow:
                outcome.allowed[day.isoformat()] = f"{why}; let through by the run tag {ALLOW_TAG}"
            else:
                outcome.tripped[day.isoformat()] = why
        day += dt.timedelta(days=1)
    return outcome

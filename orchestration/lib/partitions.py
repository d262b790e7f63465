"""Daily partitions: one per UTC business date, from the first business date of the sources."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from dataops.core.settings import Settings

DEFAULT_HISTORY_DAYS = 120


def first_business_date(settings: Settings) -> dt.date:
    """``DATAOPS_START_DATE`` if set, else the first day the accounting system exported, else 120 days ago."""
    configured = os.environ.get("DATAOPS_START_DATE")
    if configured:
        return dt.date.fromisoformat(configured)
    exports = settings.accounting_exports
    if exports.exists():
        days = sorted(p.name for p in exports.iterdir() if p.is_dir() and not p.name.startswith("."))
        if days:
            return dt.date.fromisoformat(days[0])
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DEFAULT_HISTORY_DAYS)


def daily_partitions(settings: Settings | None = None) -> dg.DailyPartitionsDefinition:
    """One partition per UTC business date, from the sources' first (read when the code location loads)."""
    start = first_business_date(settings or Settings.from_env())
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")


def window(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The landing run's business dates as an inclusive range (one day, or a whole backfill range)."""
    tw = context.partition_time_window
    return tw.start.date(), (tw.end - dt.timedelta(days=1)).date()


def run_window(tags: dict[str, str]) -> tuple[dt.date, dt.date] | None:
    """The business dates a run's tags name (a partition or a range), if any."""
    single = tags.get("dagster/partition")
    start = tags.get("dagster/asset_partition_range_start", single)
    end = tags.get("dagster/asset_partition_range_end", single)
    return (dt.date.fromisoformat(start), dt.date.fromisoformat(end)) if start and end else None

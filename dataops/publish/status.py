"""What is published, read from the analyst warehouse only: never from the build warehouse, so asking never
waits for (or blocks) a run. Rows are fetched as plain values: ``dataops status`` answers in a fraction of a
second, and converting through Arrow and polars would take a third of that."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect, scalar, table_exists
from registry.loader import load_registry


@dataclass(frozen=True)
class Freshness:
    """Whether what analysts have reaches yesterday, judged by the registry's publishing deadline."""

    as_of: dt.date | None
    is_fresh: bool
    target: str  # e.g. "yesterday (2025-03-04) published by 06:00 UTC"

    @property
    def summary(self) -> str:
        through = f"published through {self.as_of}" if self.as_of else "nothing published"
        return f"{through}: {'fresh' if self.is_fresh else 'stale'} (target: {self.target})"


def judge_freshness(as_of: dt.date | None, now: dt.datetime, hour: int) -> Freshness:
    """Fresh when yesterday is published, or when the deadline of the first missing day has not passed:
    day D is due at ``hour``:00 UTC on D + 1."""
    yesterday = now.date() - dt.timedelta(days=1)
    target = f"yesterday ({yesterday}) published by {hour:02d}:00 UTC"
    if as_of is None:
        return Freshness(None, False, target)
    first_missing_due = dt.datetime.combine(as_of + dt.timedelta(days=2), dt.time(hour), dt.UTC)
    return Freshness(as_of, as_of >= yesterday or now < first_missing_due, target)


def freshness(settings: Settings, now: dt.datetime) -> Freshness:
    """The published warehouse's freshness at ``now``."""
    as_of = None
    if settings.analytics_db.exists():
        with connect(settings.analytics_db, read_only=True) as conn:
            as_of = scalar(conn, "select max(as_of_date) from publish.publish_log")
    return judge_freshness(as_of, now, load_registry().freshness_hour)


@dataclass
class Status:
    publish_id: str | None = None
    published_at: dt.datetime | None = None
    as_of: dt.date | None = None
    is_fresh: bool = False
    freshness_target: str = ""
    kpis: list[dict[str, Any]] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quarantine: dict[str, int] = field(default_factory=dict)


def published_kpis(
    settings: Settings, day: dt.date | None = None, limits: Limits | None = None
) -> list[dict[str, Any]]:
    """KPIs of a date (default: the latest), as plain values: date, kpi, value, unit, is_final."""
    if not settings.analytics_db.exists():
        raise FileNotFoundError(f"no analyst warehouse at {settings.analytics_db}: nothing published yet")
    with connect(settings.analytics_db, read_only=True, limits=limits) as conn:
        cursor = conn.execute(
            """
            select cast(date_day as varchar) as date, kpi_name as kpi, cast(value as double) as value, unit, is_final
            from kpis.kpi_daily
            where date_day = coalesce(?, (select max(date_day) from kpis.kpi_daily))
            order by (select kpi_order from reference.registry_kpis r where r.kpi_name = kpi_daily.kpi_name)
        """,
            [day],
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


CheckSummary = tuple[list[str], list[str]]  # checks that failed in the latest run: errors, warnings


def platform_status(
    settings: Settings,
    now: dt.datetime | None = None,
    checks: CheckSummary | None = None,
    limits: Limits | None = None,
) -> Status:
    """What analysts have: the latest publish, its freshness at ``now``, its KPIs and quarantine counts.

    ``checks`` are the latest run's failed checks, which only the orchestrator knows; its caller passes them.
    ``limits`` are the run's: DuckDB opens a file once per process and config, so readers of the analyst file
    side by side in one process must all pass the same (the egress step: docs/decisions/0096).
    """
    status = Status()
    now = now or dt.datetime.now(dt.UTC)
    if not settings.analytics_db.exists():
        return status
    with connect(settings.analytics_db, read_only=True, limits=limits) as conn:
        last = conn.execute(
            "select publish_id, published_at, as_of_date from publish.publish_log order by published_at desc limit 1"
        ).fetchone()
        if last is not None:
            status.publish_id, status.published_at, status.as_of = last
        if table_exists(conn, "publish", "quarantine_summary"):
            rows = conn.execute("select dataset, rows from publish.quarantine_summary order by dataset").fetchall()
            status.quarantine = {str(dataset): int(count) for dataset, count in rows}
    status.kpis = published_kpis(settings, status.as_of, limits)
    judged = judge_freshness(status.as_of, now, load_registry().freshness_hour)
    status.is_fresh, status.freshness_target = judged.is_fresh, judged.target
    status.failed_checks, status.warnings = checks or ([], [])
    return status

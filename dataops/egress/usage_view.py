"""The dashboard's usage section: how the customers' users use the product, in the registry's business words.

Usage differs from the other KPIs in when a figure is settled: events arrive late (mobile clients offline), so
a day is provisional until the late-arrival horizon after its end has passed (registry: usage), then final,
whatever the month's books say. The section therefore reads each figure on the latest day published, says
whether it is provisional, and gives the latest final value beside it: the figure an executive can quote.
Sessions come from the sessions mart, settled by the same horizon.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl

from dataops.egress import figures
from dataops.egress.headlines import day_words
from registry.loader import Kpi, Registry

# The published tables it reads (optional: a platform whose product sends nothing has no usage).
USAGE_SQL = """
select date_day, kpi_name, cast(value as double) as value, is_final
from kpis.kpi_usage_daily order by kpi_name, date_day
"""
SESSIONS_SQL = """
select date_day, sessions, session_users, cast(avg_session_seconds as double) as avg_session_seconds,
       cast(median_session_seconds as double) as median_session_seconds
from marts.fct_usage_sessions_daily order by date_day
"""
USAGE_SCHEMA = {"date_day": pl.Date, "kpi_name": pl.String, "value": pl.Float64, "is_final": pl.Boolean}
SESSIONS_SCHEMA = {
    "date_day": pl.Date,
    "sessions": pl.Int64,
    "session_users": pl.Int64,
    "avg_session_seconds": pl.Float64,
    "median_session_seconds": pl.Float64,
}
ACTIVE_USERS = ("daily_active_users", "weekly_active_users", "monthly_active_users")
FEATURE_PREFIX = "feature_adoption_"


@dataclass(frozen=True)
class Figure:
    """One usage figure: its latest published day and, when that day is provisional, the latest final one."""

    name: str
    title: str
    meaning: str
    value: str
    day: str
    is_final: bool
    final_value: str
    final_day: str


def usage_value(value: float | None, unit: str) -> str:
    """A usage figure as people read it: counts whole, shares in percent, ratios with two decimals."""
    if value is None:
        return "–"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "percent":
        return f"{value:.1f}%"
    return f"{value:,.2f}"


def minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min"


def _figure(name: str, title: str, meaning: str, series: pl.DataFrame, column: str, show: Any) -> Figure:
    """``series``: date_day, is_final and ``column``, ordered by day."""
    last = series.row(series.height - 1, named=True)
    final = series.filter(pl.col("is_final"))
    settled = final.row(final.height - 1, named=True) if final.height and not last["is_final"] else None
    return Figure(
        name=name,
        title=title,
        meaning=meaning,
        value=show(last[column]),
        day=day_words(last["date_day"]),
        is_final=bool(last["is_final"]),
        final_value=show(settled[column]) if settled else "",
        final_day=day_words(settled["date_day"]) if settled else "",
    )


def usage_view(
    registry: Registry, usage: pl.DataFrame, sessions: pl.DataFrame, as_of: dt.date | None
) -> dict[str, Any] | None:
    """The section's figures, feature table and chart, or None before any usage is published."""
    if usage.is_empty():
        return None
    horizon = registry.usage.late_arrival_days
    kpis = [k for k in registry.usage_kpis if k.name in set(usage["kpi_name"].to_list())]
    headline = [_kpi_figure(k, usage) for k in kpis if not k.name.startswith(FEATURE_PREFIX)]
    features = [_kpi_figure(k, usage) for k in kpis if k.name.startswith(FEATURE_PREFIX)]
    session_figures = []
    if sessions.height:
        last_day = as_of or sessions["date_day"].max()
        settled = sessions.with_columns(
            is_final=(pl.col("date_day") + pl.duration(days=horizon)) <= pl.lit(last_day, dtype=pl.Date)
        )
        for column, title, meaning, show in (
            (
                "sessions",
                "Sessions",
                f"Visits of a user: a break of more than {registry.usage.session_gap_minutes} minutes starts the next.",
                lambda v: f"{v:,.0f}",
            ),
            ("median_session_seconds", "Typical session length", "Half the day's sessions are shorter.", minutes),
            ("avg_session_seconds", "Average session length", "First event to last, averaged.", minutes),
        ):
            session_figures.append(_figure(column, title, meaning, settled, column, show))
    labels = {k.name: k.label or k.name for k in kpis}
    active = [(labels[name], usage.filter(pl.col("kpi_name") == name)) for name in ACTIVE_USERS if name in labels]
    return {
        "headline": headline,
        "features": features,
        "sessions": session_figures,
        "horizon_hours": registry.usage.late_arrival_hours,
        "has_chart": bool(active),
        "figure": figures.active_users_figure(active) if active else None,
    }


def _kpi_figure(kpi: Kpi, usage: pl.DataFrame) -> Figure:
    series = usage.filter(pl.col("kpi_name") == kpi.name).sort("date_day")
    title = kpi.label or kpi.name
    if kpi.name.startswith(FEATURE_PREFIX):
        title = kpi.name.removeprefix(FEATURE_PREFIX).replace("_", " ").capitalize()
    return _figure(kpi.name, title, kpi.description, series, "value", lambda v: usage_value(v, kpi.unit))

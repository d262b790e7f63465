"""The figures an executive reads first, from the published daily KPIs: flows as month to date and last month,
stocks as the latest value and last month's end, each against the period before it.

A flow (revenue, bookings) on a single day is mostly zero and says little; summed over the month so far and
compared with the same days of the month before, it answers "how are we doing". A stock (customers, MRR) is
read at a moment and compared with the end of the month before. Every figure says whether it is final (its
month closed) or flash, and a comparison is made only over a period the published data covers whole.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Reading:
    """One headline figure and the period it is compared with."""

    period: str  # what the value covers, in words: "month to date, 1–4 Dec 2026", "November 2026", "4 Dec 2026"
    value: float | None  # None: the published data does not reach the period
    is_final: bool
    against: str  # the period compared with, in words
    against_value: float | None  # None: the published data does not cover it whole
    note: str = ""  # what a reader must know about the value (a month the data covers only in part)

    @property
    def change(self) -> float | None:
        if self.value is None or self.against_value is None:
            return None
        return self.value - self.against_value

    @property
    def change_pct(self) -> float | None:
        if self.change is None or not self.against_value:
            return None
        return 100 * self.change / abs(self.against_value)


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def previous_month_start(day: dt.date) -> dt.date:
    return month_start(month_start(day) - ONE_DAY)


def day_words(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def span_words(first: dt.date, last: dt.date) -> str:
    """1–4 Dec 2026; 28 Feb – 3 Mar 2026 across months."""
    if first == last:
        return day_words(first)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{last.day} {last:%b %Y}"
    return f"{first.day} {first:%b} – {day_words(last)}"


def month_words(day: dt.date) -> str:
    return f"{day:%B %Y}"


class Days:
    """One KPI's published days: values, flash or final, and the range the data covers."""

    def __init__(self, daily: pl.DataFrame) -> None:
        self.values: dict[dt.date, float] = dict(zip(daily["date_day"], daily["value"], strict=True))
        self.final: dict[dt.date, bool] = dict(zip(daily["date_day"], daily["is_final"], strict=True))
        self.first = min(self.values) if self.values else None

    def covers(self, first: dt.date, last: dt.date) -> bool:
        return (
            self.first is not None
            and self.first <= first
            and all(first + dt.timedelta(days=i) in self.values for i in range((last - first).days + 1))
        )

    def total(self, first: dt.date, last: dt.date) -> float | None:
        """The sum over the days published in [first, last], None when none is."""
        days = [v for d, v in self.values.items() if first <= d <= last]
        return sum(days) if days else None

    def all_final(self, first: dt.date, last: dt.date) -> bool:
        days = [f for d, f in self.final.items() if first <= d <= last]
        return bool(days) and all(days)


def flow_readings(daily: pl.DataFrame, as_of: dt.date) -> list[Reading]:
    """Month to date against the same days of the month before; last month against the month before it."""
    days = Days(daily)
    start = month_start(as_of)
    prior_start = previous_month_start(as_of)
    prior_end = min(prior_start + (as_of - start), start - ONE_DAY)  # 1–31 Mar against 1–28 Feb
    month_to_date = Reading(
        period=f"month to date, {span_words(start, as_of)}",
        value=days.total(start, as_of),
        is_final=days.all_final(start, as_of),
        against=span_words(prior_start, prior_end),
        against_value=days.total(prior_start, prior_end) if days.covers(prior_start, prior_end) else None,
        note=_partial_note(days, start, as_of),
    )
    before_start = previous_month_start(prior_start)
    last_month = Reading(
        period=month_words(prior_start),
        value=days.total(prior_start, start - ONE_DAY),
        is_final=days.all_final(prior_start, start - ONE_DAY),
        against=month_words(before_start),
        against_value=days.total(before_start, prior_start - ONE_DAY)
        if days.covers(before_start, prior_start - ONE_DAY)
        else None,
        note=_partial_note(days, prior_start, start - ONE_DAY),
    )
    return [month_to_date, last_month]


def stock_readings(daily: pl.DataFrame, as_of: dt.date) -> list[Reading]:
    """The latest value against last month's end; last month's end against the end of the month before."""
    days = Days(daily)
    last_month_end = month_start(as_of) - ONE_DAY
    before_end = month_start(last_month_end) - ONE_DAY
    latest = Reading(
        period=day_words(as_of),
        value=days.values.get(as_of),
        is_final=days.final.get(as_of, False),
        against=f"end of {last_month_end:%B}",
        against_value=days.values.get(last_month_end),
    )
    month_end = Reading(
        period=f"end of {month_words(last_month_end)}",
        value=days.values.get(last_month_end),
        is_final=days.final.get(last_month_end, False),
        against=f"end of {before_end:%B}",
        against_value=days.values.get(before_end),
    )
    return [latest, month_end]


def _partial_note(days: Days, first: dt.date, last: dt.date) -> str:
    if days.first is None or days.first <= first or days.first > last:
        return ""
    return f"from {day_words(days.first)}, when the published data starts"

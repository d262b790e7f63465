"""The executive's headline figures: which days each one sums or reads, what it is compared with, and when the
published data is too short to compare."""

from __future__ import annotations

import datetime as dt

import polars as pl

from dataops.egress.headlines import flow_readings, span_words, stock_readings


def days(first: dt.date, last: dt.date, value: float = 1.0, final_through: dt.date | None = None) -> pl.DataFrame:
    """One value a day (the day of the month times ``value``), final through ``final_through``."""
    dates = pl.date_range(first, last, eager=True)
    return pl.DataFrame(
        {
            "date_day": dates,
            "value": [d.day * value for d in dates],
            "is_final": [final_through is not None and d <= final_through for d in dates],
        }
    )


def test_a_flow_is_read_as_month_to_date_and_last_month_against_the_periods_before() -> None:
    daily = days(dt.date(2025, 1, 1), dt.date(2025, 3, 31), final_through=dt.date(2025, 2, 28))
    mtd, last = flow_readings(daily, dt.date(2025, 3, 31))

    assert mtd.period == "month to date, 1–31 Mar 2025" and mtd.value == sum(range(1, 32))
    assert mtd.against == "1–28 Feb 2025" and mtd.against_value == sum(range(1, 29))  # February ends on the 28th
    assert not mtd.is_final and mtd.change == sum(range(29, 32))
    assert last.period == "February 2025" and last.value == sum(range(1, 29)) and last.is_final
    assert last.against == "January 2025" and last.against_value == sum(range(1, 32))
    assert last.change_pct is not None and round(last.change_pct, 1) == round(100 * (406 - 496) / 496, 1)

    early = flow_readings(daily, dt.date(2025, 3, 4))[0]
    assert early.value == 1 + 2 + 3 + 4 and early.against_value == 1 + 2 + 3 + 4  # the same days of February


def test_a_flow_is_compared_only_with_a_period_the_data_covers_whole() -> None:
    daily = days(dt.date(2025, 1, 20), dt.date(2025, 2, 11), final_through=dt.date(2025, 1, 31))
    mtd, last = flow_readings(daily, dt.date(2025, 2, 11))

    assert mtd.value == sum(range(1, 12)) and mtd.against_value is None and mtd.change is None
    assert last.value == sum(range(20, 32)) and last.is_final
    assert last.note == "from 20 Jan 2025, when the published data starts"  # a part of January only
    assert last.against == "December 2024" and last.against_value is None


def test_a_stock_is_read_at_its_latest_day_and_last_month_end() -> None:
    daily = days(dt.date(2025, 1, 1), dt.date(2025, 3, 10), value=10.0, final_through=dt.date(2025, 2, 28))
    latest, month_end = stock_readings(daily, dt.date(2025, 3, 10))

    assert (latest.period, latest.value, latest.is_final) == ("10 Mar 2025", 100.0, False)
    assert (latest.against, latest.against_value, latest.change) == ("end of February", 280.0, -180.0)
    assert (month_end.period, month_end.value, month_end.is_final) == ("end of February 2025", 280.0, True)
    assert (month_end.against, month_end.against_value) == ("end of January", 310.0)

    late = stock_readings(days(dt.date(2025, 2, 3), dt.date(2025, 3, 10)), dt.date(2025, 3, 10))[1]
    assert late.value == 28.0 and late.against_value is None  # the data starts after the end of January


def test_periods_are_written_as_people_write_them() -> None:
    assert span_words(dt.date(2025, 3, 1), dt.date(2025, 3, 4)) == "1–4 Mar 2025"
    assert span_words(dt.date(2025, 2, 28), dt.date(2025, 3, 3)) == "28 Feb – 3 Mar 2025"
    assert span_words(dt.date(2025, 3, 1), dt.date(2025, 3, 1)) == "1 Mar 2025"

"""Source connectors: each reads its system the way a real connector would, and nothing more.

``extract(table, start, end)`` returns one frame per business date in [start, end] (inclusive) with the
records as the source gave them: no repair, no typing. The contract does that, after landing.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import polars as pl


class SourceUnavailable(RuntimeError):
    """The source cannot deliver right now and may by itself later (an outage outlasting the connector's own
    retries, a database busy): the only source error worth retrying."""


class SourceDataError(ValueError):
    """What the source delivered, or failed to deliver, is wrong the same way on every attempt (a damaged,
    empty or undecodable file, a missing manifest, counts that disagree, a refused token), so it is never
    retried. The message names the file or API object, the business date and, where there is one, the line.
    """


class Extractor(Protocol):
    system: str
    watermark_column: str | None

    def extract(self, table: str, start: dt.date, end: dt.date) -> dict[dt.date, pl.DataFrame]: ...


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def split_by_day(df: pl.DataFrame, day_expr: pl.Expr, start: dt.date, end: dt.date) -> dict[dt.date, pl.DataFrame]:
    """One frame per day of the range (empty where nothing changed), keeping column types."""
    out = {d: df.clear() for d in days(start, end)}
    if df.height:
        tagged = df.with_columns(day_expr.alias("__day"))
        for (day,), part in tagged.partition_by("__day", as_dict=True, maintain_order=True).items():
            if day in out:
                out[day] = part.drop("__day")
    return out


def nulls_as_text(df: pl.DataFrame) -> pl.DataFrame:
    """All-null columns have no type; land them as text so every version has the same schema."""
    return df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items() if t == pl.Null])

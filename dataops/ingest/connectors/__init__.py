"""Source connectors: each reads its system the way a real connector would, and nothing more.

``extract(table, start, end)`` reads the business dates [start, end] (inclusive) of a table in one go and
returns one frame: the records as the source gave them (no repair, no typing: the contract does that,
after landing), each with its business date in the ``__day`` column.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import polars as pl

DAY = "__day"  # the business date a connector assigns each record
# The columns a record came with (JSON list), where one extract joins sources of different shapes (files of
# different days): a record's hash covers its own columns, not the nulls another file's columns add.
SHAPE = "__columns"


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

    def extract(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame: ...


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def with_day(df: pl.DataFrame, day_expr: pl.Expr, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The records with their business date, keeping only the range's (an empty frame gets the column too)."""
    if df.height == 0:
        return df.with_columns(pl.lit(None, dtype=pl.Date).alias(DAY)).clear()
    tagged = df.with_columns(day_expr.alias(DAY))
    return tagged.filter(pl.col(DAY).is_between(start, end))


def nulls_as_text(df: pl.DataFrame) -> pl.DataFrame:
    """All-null columns have no type; land them as text so every version has the same schema."""
    return df.with_columns([pl.col(c).cast(pl.String) for c, t in df.schema.items() if t == pl.Null])

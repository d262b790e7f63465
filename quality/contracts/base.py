"""What an ingestion contract declares about one source table, besides its pandera model.

The pandera ``DataFrameModel`` declares columns, types and row rules (required, ranges, formats). The
``Contract`` around it adds what pandera does not model: the key, references to a parent table in the
same system (checked relationally at load), renamed columns (aliases, from the date they apply), and how
raw source values are parsed before typing (mixed date and timestamp formats, thousands separators).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl

from registry.loader import load_registry

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"
CURRENCIES = list(load_registry().currencies)  # the registry's (money.currencies), read when contracts load


@dataclass(frozen=True)
class Alias:
    """A source column that stands for a contract column from a business date on (schema drift)."""

    source_name: str
    effective_from: dt.date


@dataclass(frozen=True)
class Contract:
    system: str
    table: str
    model: type[pa.DataFrameModel]
    key: tuple[str, ...]
    # column -> (parent table in the same system, parent column)
    references: dict[str, tuple[str, str]] = field(default_factory=dict)
    aliases: dict[str, tuple[Alias, ...]] = field(default_factory=dict)
    # Source formats to read before typing, by column.
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    amounts_with_separators: tuple[str, ...] = ()
    # Landing-zone partitions older than this are archived (dataops archive), never deleted.
    retention_days: int = 730
    # Columns this platform writes into the source itself (the CRM write-back). No model reads them, so a
    # re-run that re-extracts only their new values changes nothing dbt builds (docs/decisions/0020).
    written_back: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.system}.{self.table}"

    def columns(self) -> dict[str, pl.DataType]:
        """Contract columns and their polars types, in declaration order."""
        schema = self.model.to_schema()
        return {name: col.dtype.type for name, col in schema.columns.items()}

    def required(self) -> list[str]:
        return [name for name, col in self.model.to_schema().columns.items() if col.required]


def valid_email(data: pa.PolarsData) -> pl.LazyFrame:
    """An email that is valid once trimmed and lowercased (case and spaces are repairable noise)."""
    return data.lazyframe.select(
        pl.col(data.key).str.strip_chars().str.to_lowercase().str.contains(EMAIL_PATTERN).fill_null(False)
    )

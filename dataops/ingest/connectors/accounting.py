"""Accounting connector: the day's export folder, read through its manifest.

The manifest says which file holds each table; a corrected re-export (``<table>_v2.csv``) replaces the
original. Each file's checksum and row count are verified against the manifest before it is read.
Values are read as text (the BOM is dropped); typing is the contract's job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import polars as pl

from dataops.ingest.connectors import SourceUnavailable, days


class AccountingExtractor:
    system = "accounting"
    watermark_column: str | None = None  # the business date of the export

    def __init__(self, exports: Path) -> None:
        self.exports = exports

    def manifest(self, day: dt.date) -> dict[str, object]:
        path = self.exports / day.isoformat() / "manifest.json"
        if not path.exists():
            raise SourceUnavailable(
                f"no accounting export for {day} ({path} is missing): the day has not closed yet, or the "
                "export was not delivered"
            )
        data: dict[str, object] = json.loads(path.read_text())
        return data

    def file_for(self, day: dt.date, table: str) -> tuple[Path, int]:
        manifest = self.manifest(day)
        entries = [e for e in manifest["files"] if e["table"] == table]  # type: ignore[attr-defined]
        if not entries:
            raise SourceUnavailable(f"the accounting manifest of {day} lists no file for {table}")
        entry = entries[-1]
        path = self.exports / day.isoformat() / entry["name"]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise SourceUnavailable(f"{path}: checksum differs from the manifest (file damaged or being rewritten)")
        return path, int(entry["rows"])

    def extract(self, table: str, start: dt.date, end: dt.date) -> dict[dt.date, pl.DataFrame]:
        out = {}
        for day in days(start, end):
            path, rows = self.file_for(day, table)
            df = pl.read_csv(path, infer_schema=False, encoding="utf8")
            if df.height != rows:
                raise SourceUnavailable(f"{path}: {df.height} rows, the manifest says {rows}")
            out[day] = df.with_columns(pl.lit(f"{day.isoformat()}/{path.name}").alias("__file"))
        return out

"""Accounting connector: each day's export folder, read through its manifest.

The manifest says which file holds each table; a corrected re-export (``<table>_v2.csv``) replaces the
original. Each file's checksum and row count are verified against the manifest before it is read.
Values are read as text (the BOM is dropped); typing is the contract's job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import polars as pl

from dataops.ingest.connectors import DAY, SHAPE, SourceUnavailable, days


class AccountingExtractor:
    system = "accounting"
    watermark_column: str | None = None  # the business date of the export

    def __init__(self, exports: Path) -> None:
        self.exports = exports
        self._manifests: dict[dt.date, tuple[float, dict[str, object]]] = {}

    def manifest(self, day: dt.date) -> dict[str, object]:
        """The day's manifest (read once per extractor while the file is unchanged: its tables share it)."""
        path = self.exports / day.isoformat() / "manifest.json"
        if not path.exists():
            raise SourceUnavailable(
                f"no accounting export for {day} ({path} is missing): the day has not closed yet, or the "
                "export was not delivered"
            )
        changed = path.stat().st_mtime
        cached = self._manifests.get(day)
        if cached is None or cached[0] != changed:
            cached = (changed, json.loads(path.read_text()))
            self._manifests[day] = cached
        return cached[1]

    def file_for(self, day: dt.date, table: str) -> tuple[Path, int, bytes]:
        manifest = self.manifest(day)
        entries = [e for e in manifest["files"] if e["table"] == table]  # type: ignore[attr-defined]
        if not entries:
            raise SourceUnavailable(f"the accounting manifest of {day} lists no file for {table}")
        entry = entries[-1]
        path = self.exports / day.isoformat() / entry["name"]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise SourceUnavailable(f"{path}: checksum differs from the manifest (file damaged or being rewritten)")
        return path, int(entry["rows"]), data

    def extract(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        frames = []
        for day in days(start, end):
            path, rows, data = self.file_for(day, table)
            df = pl.read_csv(io.BytesIO(data), infer_schema=False, encoding="utf8")
            if df.height != rows:
                raise SourceUnavailable(f"{path}: {df.height} rows, the manifest says {rows}")
            source = pl.lit(f"{day.isoformat()}/{path.name}").alias("__file")
            frames.append(df.with_columns(source, pl.lit(day).alias(DAY), pl.lit(json.dumps(df.columns)).alias(SHAPE)))
        # a column the source added or renamed on some day is null on the others (the contract reads aliases)
        return pl.concat(frames, how="diagonal") if frames else pl.DataFrame(schema={DAY: pl.Date})

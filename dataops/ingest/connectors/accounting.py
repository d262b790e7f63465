"""Accounting connector: each day's export folder, read through its manifest.

The manifest says which file holds each table; a corrected re-export (``<table>_v2.csv``) replaces the
original. Each file's checksum and row count are verified against the manifest before it is read.
Values are read as text (the BOM is dropped); typing is the contract's job.

Everything that can be wrong with a delivered day (no manifest, a damaged, empty or undecodable file, a
row count that disagrees) is a :class:`SourceDataError` naming the file, the business date and, for a
file that cannot be decoded or parsed, its line: it fails the same way however often it is read again.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import polars as pl

from dataops.ingest.connectors import DAY, SHAPE, SourceDataError, days


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
            raise SourceDataError(
                f"{path} (accounting export, business date {day}): no manifest; the day has not closed yet, "
                "or its export was not delivered"
            )
        changed = path.stat().st_mtime
        cached = self._manifests.get(day)
        if cached is None or cached[0] != changed:
            try:
                data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SourceDataError(
                    f"{path} (accounting export, business date {day}): not a valid manifest: {exc}"
                ) from None
            cached = (changed, data)
            self._manifests[day] = cached
        return cached[1]

    def file_for(self, day: dt.date, table: str) -> tuple[Path, bytes, int]:
        """The day's current file of ``table``, its bytes (checksum verified) and the rows the manifest lists."""
        manifest = self.manifest(day)
        entries = [e for e in manifest.get("files", []) if e.get("table") == table]  # type: ignore[attr-defined]
        folder = self.exports / day.isoformat()
        if not entries:
            raise SourceDataError(f"{folder}/manifest.json (accounting export, business date {day}) lists no {table}")
        entry = entries[-1]
        path = folder / entry["name"]
        where = f"{path} (accounting export, business date {day})"
        if not path.exists():
            raise SourceDataError(f"{where}: listed in the manifest but missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise SourceDataError(f"{where}: checksum differs from the manifest (the file is damaged or was changed)")
        return path, data, int(entry["rows"])

    def extract(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        frames = []
        for day in days(start, end):
            path, data, rows = self.file_for(day, table)
            df = read_export(path, data, day, rows)
            source = pl.lit(f"{day.isoformat()}/{path.name}").alias("__file")
            frames.append(df.with_columns(source, pl.lit(day).alias(DAY), pl.lit(json.dumps(df.columns)).alias(SHAPE)))
        # a column the source added or renamed on some day is null on the others (the contract reads aliases)
        return pl.concat(frames, how="diagonal") if frames else pl.DataFrame(schema={DAY: pl.Date})


def listed_file(exports: Path, day: dt.date, table: str) -> Path | None:
    """The file the day's manifest lists for ``table`` (unverified: for naming it in a message)."""
    try:
        manifest = json.loads((exports / day.isoformat() / "manifest.json").read_text(encoding="utf-8"))
        entry = [e for e in manifest["files"] if e["table"] == table][-1]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return exports / day.isoformat() / str(entry["name"])


def read_export(path: Path, data: bytes, day: dt.date, rows: int) -> pl.DataFrame:
    """One export file as text columns, or a :class:`SourceDataError` naming the file, date and line."""
    where = f"{path} (accounting export, business date {day})"
    if not data.strip():
        raise SourceDataError(f"{where}: the file is empty ({len(data)} bytes); the manifest lists {rows} rows")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceDataError(
            f"{where}, line {line}: not UTF-8 (byte 0x{data[exc.start]:02X}); the export must be UTF-8"
        ) from None
    try:
        df = pl.read_csv(text.encode(), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        malformed = _first_malformed_line(text)
        at = f", line {malformed}" if malformed else ""
        raise SourceDataError(f"{where}{at}: not a readable CSV: {str(exc).splitlines()[0]}") from None
    if df.height != rows:
        raise SourceDataError(f"{where}: {df.height} rows, the manifest lists {rows}")
    return df


def _first_malformed_line(text: str) -> int | None:
    """The first line whose record has a different number of fields than the header, if any."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    for record in reader:
        if header is not None and len(record) != len(header):
            return reader.line_num
    return None

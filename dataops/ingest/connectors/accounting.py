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
        """Every day's file, each checked against its manifest, parsed as one multi-file scan per header.

        The scan gives each row its file, so each file's rows are still counted against its manifest. A file
        the scan cannot parse is read again alone (``read_export``): the error then names its file, date and
        line, as a day read by itself would."""
        delivered = [(day, *self.file_for(day, table)) for day in days(start, end)]
        for day, path, data, rows in delivered:
            _check_bytes(path, data, day, rows)
        by_header: dict[bytes, list[tuple[dt.date, Path, bytes, int]]] = {}
        for file in delivered:
            by_header.setdefault(_header(file[2]), []).append(file)
        frames = [_scan(files) for files in by_header.values()]  # the first holds the first day's columns
        if not frames:
            return pl.DataFrame(schema={DAY: pl.Date})
        # a column the source added or renamed on some day is null on the others (the contract reads aliases)
        order = [file[1].as_posix() for file in delivered]
        return (
            pl.concat(frames, how="diagonal")
            .with_columns(pl.col("__path").replace_strict(order, range(len(order))).alias("__order"))
            .sort("__order", maintain_order=True)
            .drop("__path", "__order")
        )


def _header(data: bytes) -> bytes:
    """A file's first line, the key of the files scanned together (their columns, in order)."""
    return data.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r")


def _scan(files: list[tuple[dt.date, Path, bytes, int]]) -> pl.DataFrame:
    """Files sharing a header as one frame of text columns, each row with its file, day and columns."""
    paths = [path.as_posix() for _, path, _, _ in files]
    try:
        df = pl.scan_csv(paths, infer_schema=False, include_file_paths="__path").collect()
    except pl.exceptions.PolarsError:  # a file the scan cannot read: each alone names its fault
        return pl.concat([_one(*file) for file in files], how="diagonal")
    found = dict(df.group_by("__path").len().iter_rows())
    for day, path, data, rows in files:
        if found.get(path.as_posix(), 0) != rows:
            read_export(path, data, day, rows)  # raises: its rows disagree with the manifest
    columns = json.dumps([c for c in df.columns if c != "__path"])
    labels = [f"{day.isoformat()}/{path.name}" for day, path, _, _ in files]
    return df.with_columns(
        pl.col("__path").replace_strict(paths, labels).alias("__file"),
        pl.col("__path").replace_strict(paths, [day for day, _, _, _ in files], return_dtype=pl.Date).alias(DAY),
        pl.lit(columns).alias(SHAPE),
    )


def _one(day: dt.date, path: Path, data: bytes, rows: int) -> pl.DataFrame:
    """One file read by itself, as a frame of ``_scan``'s shape (or its error, naming file, date and line)."""
    df = read_export(path, data, day, rows)
    return df.with_columns(
        pl.lit(path.as_posix()).alias("__path"),
        pl.lit(f"{day.isoformat()}/{path.name}").alias("__file"),
        pl.lit(day).alias(DAY),
        pl.lit(json.dumps(df.columns)).alias(SHAPE),
    )


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
    text = _check_bytes(path, data, day, rows)
    try:
        df = pl.read_csv(text.encode(), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        malformed = _first_malformed_line(text)
        at = f", line {malformed}" if malformed else ""
        raise SourceDataError(f"{where}{at}: not a readable CSV: {str(exc).splitlines()[0]}") from None
    if df.height != rows:
        raise SourceDataError(f"{where}: {df.height} rows, the manifest lists {rows}")
    return df


def _check_bytes(path: Path, data: bytes, day: dt.date, rows: int) -> str:
    """The file's text, or a :class:`SourceDataError` for an empty file or one that is not UTF-8 (its line)."""
    where = f"{path} (accounting export, business date {day})"
    if not data.strip():
        raise SourceDataError(f"{where}: the file is empty ({len(data)} bytes); the manifest lists {rows} rows")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceDataError(
            f"{where}, line {line}: not UTF-8 (byte 0x{data[exc.start]:02X}); the export must be UTF-8"
        ) from None


def _first_malformed_line(text: str) -> int | None:
    """The first line whose record has a different number of fields than the header, if any."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    for record in reader:
        if header is not None and len(record) != len(header):
            return reader.line_num
    return None

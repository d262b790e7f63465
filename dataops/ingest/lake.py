"""The landing zone: immutable Parquet, one file per extract of a (table, business date).

Layout: ``lake/raw/<system>/<table>/date=YYYY-MM-DD/part-<extracted_at>-<run>.parquet``. Files are
written aside and renamed into place, so a file that exists is complete; they are never modified. A
re-run lands a new version beside the old ones; readers take the newest. Old versions go only through
an explicit ``prune``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

LINEAGE = ("_system", "_extracted_at", "_run_id", "_partition", "_record_hash", "_source")
# The lineage that differs between two extractions of the same records: what a re-run changes and nothing else.
PER_EXTRACTION = ("_extracted_at", "_run_id", "_source")


@dataclass(frozen=True)
class LandedFile:
    path: Path
    rows: int
    bytes: int


def partition_dir(lake: Path, system: str, table: str, day: dt.date) -> Path:
    return lake / "raw" / system / table / f"date={day.isoformat()}"


def land(
    lake: Path, system: str, table: str, day: dt.date, df: pl.DataFrame, extracted_at: dt.datetime, run_id: str
) -> LandedFile:
    """Write one day's extract as a new version, atomically."""
    folder = partition_dir(lake, system, table, day)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = extracted_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    final = folder / f"part-{stamp}-{run_id[:8]}.parquet"
    tmp = folder / f".{final.name}.tmp"
    df.write_parquet(tmp)
    os.replace(tmp, final)
    return LandedFile(final, df.height, final.stat().st_size)


def versions(lake: Path, system: str, table: str, day: dt.date) -> list[Path]:
    """Complete versions of a partition, oldest first."""
    folder = partition_dir(lake, system, table, day)
    return sorted(folder.glob("part-*.parquet")) if folder.exists() else []


def newest(lake: Path, system: str, table: str, day: dt.date) -> Path | None:
    found = versions(lake, system, table, day)
    return found[-1] if found else None


def landed_days(lake: Path, system: str, table: str) -> list[dt.date]:
    root = lake / "raw" / system / table
    if not root.exists():
        return []
    days = [dt.date.fromisoformat(p.name.removeprefix("date=")) for p in root.glob("date=*") if p.is_dir()]
    return sorted(d for d in days if versions(lake, system, table, d))


def prune(lake: Path, keep: int = 1) -> list[Path]:
    """Remove all but the newest ``keep`` versions of every partition; returns what was removed."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest version is what the raw layer is built from")
    removed = []
    for folder in sorted((lake / "raw").glob("*/*/date=*")):
        files = sorted(folder.glob("part-*.parquet"))
        for old in files[:-keep]:
            old.unlink()
            removed.append(old)
    return removed

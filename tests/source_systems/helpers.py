"""Readers of what the simulated systems emitted, for tests that check records against the dirt log."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import polars as pl


def accounting_rows(sources: Path, table: str, current_only: bool = False) -> pl.DataFrame:
    """Rows of one accounting table from every day's files, as text, with `_day` and `_file`."""
    frames = []
    for folder in sorted((sources / "accounting" / "exports").iterdir()):
        if folder.name.startswith("."):
            continue
        manifest = json.loads((folder / "manifest.json").read_text())
        names = [f"{table}.csv", f"{table}_v2.csv"]
        if current_only:
            names = [e["name"] for e in manifest["files"] if e["table"] == table]
        for name in names:
            path = folder / name
            if not path.exists():
                continue
            with path.open(encoding="utf-8-sig", newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows:
                df = pl.DataFrame(rows).with_columns(_day=pl.lit(folder.name), _file=pl.lit(name))
                # the schema-drift rename, undone so that one column holds the amount on every day
                frames.append(df.rename({"gross_amount": "amount"}, strict=False))
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()


def sqlite_rows(db: Path, table: str) -> pl.DataFrame:
    with sqlite3.connect(db) as conn:
        cur = conn.execute(f"select * from {table}")
        names = [c[0] for c in cur.description]
        return pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)


def system_rows(sources: Path, system: str, table: str) -> pl.DataFrame:
    if system == "erp":
        return sqlite_rows(sources / "erp" / "erp.sqlite", table)
    if system == "crm":
        return sqlite_rows(sources / "crm" / "crm.sqlite", table)
    return accounting_rows(sources, table)

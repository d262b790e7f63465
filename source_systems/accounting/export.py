"""The accounting system's daily exports: one folder per business day, CSV files and a manifest.

A day's folder appears atomically when the day closes (written aside, then renamed), so a reader never
sees half a day. Files carry the system's quirks: a UTF-8 byte-order mark, thousands separators and
mixed date formats. A corrected re-export (``<table>_v2.csv``) supersedes the original; the manifest is
rewritten last, atomically, and lists which file is current.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import polars as pl

# The accounting system's release that renamed invoices.amount to gross_amount and added po_number; the
# registry records the business date it took effect (registry/enterprise.yaml, source_releases).
RENAMING_RELEASE = "2025.1"
TABLES = ("invoices", "payments", "credit_memos", "journal_lines", "fx_rates")
# Column order of each export; invoices change shape from the renaming release on.
COLUMNS = {
    "invoices": [
        "invoice_no",
        "customer_id",
        "contract_ref",
        "invoice_date",
        "due_date",
        "currency",
        "amount",
        "invoice_type",
    ],
    "payments": ["payment_no", "invoice_no", "customer_id", "payment_date", "currency", "amount", "method"],
    "credit_memos": ["memo_no", "invoice_no", "customer_id", "memo_date", "currency", "amount", "reason"],
    "journal_lines": [
        "journal_no",
        "line_no",
        "posting_date",
        "account",
        "account_name",
        "debit",
        "credit",
        "currency",
        "reference",
        "description",
    ],
    "fx_rates": ["rate_date", "currency", "usd_per_unit"],
}
DRIFTED_INVOICE_COLUMNS = [
    "invoice_no",
    "customer_id",
    "contract_ref",
    "invoice_date",
    "due_date",
    "currency",
    "gross_amount",
    "invoice_type",
    "po_number",
]


def _csv_bytes(df: pl.DataFrame, columns: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(df.select(columns).rows() if df.height else [])
    return "\ufeff".encode() + buf.getvalue().encode()


def _manifest(day: dt.date, version: int, files: list[dict[str, object]], generated_at: str) -> bytes:
    return (
        json.dumps(
            {
                "system": "accounting",
                "business_date": day.isoformat(),
                "version": version,
                "generated_at": generated_at,
                "files": files,
            },
            indent=2,
        )
        + "\n"
    ).encode()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_day(root: Path, day: dt.date, tables: dict[str, pl.DataFrame], drifted: bool) -> None:
    """Write the export folder of a closed business day, atomically."""
    final = root / day.isoformat()
    tmp = root / f".{day.isoformat()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = []
    for table in TABLES:
        df = tables.get(table, pl.DataFrame())
        if table == "invoices":
            df = df.rename({"amount": "gross_amount"}) if drifted and "amount" in df.columns else df
            columns = DRIFTED_INVOICE_COLUMNS if drifted else COLUMNS["invoices"]
        else:
            columns = COLUMNS[table]
        data = _csv_bytes(df, columns)
        (tmp / f"{table}.csv").write_bytes(data)
        files.append(
            {"name": f"{table}.csv", "table": table, "rows": df.height, "sha256": hashlib.sha256(data).hexdigest()}
        )
    (tmp / "manifest.json").write_bytes(_manifest(day, 1, files, f"{day.isoformat()}T23:59:59Z"))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_reexport(root: Path, day: dt.date, table: str, df: pl.DataFrame, generated_on: dt.date) -> None:
    """A corrected export of one table for an earlier day: ``<table>_v2.csv``, then the manifest."""
    folder = root / day.isoformat()
    data = _csv_bytes(df, COLUMNS[table])
    _atomic_write(folder / f"{table}_v2.csv", data)
    manifest = json.loads((folder / "manifest.json").read_text())
    files = []
    for entry in manifest["files"]:
        if entry["table"] == table:
            entry = {
                "name": f"{table}_v2.csv",
                "table": table,
                "rows": df.height,
                "sha256": hashlib.sha256(data).hexdigest(),
                "supersedes": f"{table}.csv",
            }
        files.append(entry)
    _atomic_write(
        folder / "manifest.json",
        _manifest(day, manifest["version"] + 1, files, f"{generated_on.isoformat()}T23:59:59Z"),
    )

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


# The last product_lines() parse, by its sources' manifests (path and time of each): several modules of the "tiny"
# group read the same read-only simulation, and a parse of its 390,000 lines takes about 10 CPU-s.
_PARSED: dict[tuple[str, ...], pl.DataFrame] = {}


def product_lines(sources: Path) -> pl.DataFrame:
    """Every line the product's collectors delivered, parsed where it parses, with its object and position.

    ``delivered`` is the day the object became visible: its hour's manifest's ``delivered_at`` date. The last
    parse is kept while no manifest of ``sources`` changes (an hour's manifest is written after its objects).
    """
    root = sources / "product" / "events"
    manifests = sorted(root.rglob("manifest.json"))
    key = (str(root), *(f"{p}@{p.stat().st_mtime_ns}" for p in manifests))
    if key not in _PARSED:
        _PARSED.clear()
        _PARSED[key] = _parse_lines(root, manifests)
    return _PARSED[key]


def _parse_lines(root: Path, manifests: list[Path]) -> pl.DataFrame:
    import gzip

    rows = []
    for manifest_path in manifests:
        manifest = json.loads(manifest_path.read_text())
        delivered = manifest["delivered_at"][:10]
        for entry in manifest["objects"]:
            path = manifest_path.parent / entry["name"]
            name = path.relative_to(root).as_posix()
            body = gzip.decompress(path.read_bytes()).decode()
            ends_with_newline = body.endswith("\n")
            lines = body.split("\n")
            if ends_with_newline:
                lines = lines[:-1]
            for number, text in enumerate(lines, start=1):
                try:
                    event = json.loads(text)
                except ValueError:
                    event = None
                ok = isinstance(event, dict) and "event_id" in event
                event = event if ok else {}
                context = event.get("context") or {}
                rows.append(
                    {
                        "object": name,
                        "line": number,
                        "last": number == len(lines),
                        "ends_with_newline": ends_with_newline,
                        "delivered": delivered,
                        "text": text,
                        "ok": ok,
                        "event_id": event.get("event_id"),
                        "event_type": event.get("event_type"),
                        "occurred_at": event.get("occurred_at"),
                        "sent_at": event.get("sent_at"),
                        "received_at": event.get("received_at"),
                        "user_id": event.get("user_id"),
                        "device_id": event.get("device_id"),
                        "account_ref": event.get("account_ref"),
                        "platform": context.get("platform"),
                        "user_agent": context.get("user_agent"),
                        "properties": json.dumps(event.get("properties")) if ok else None,
                    }
                )
    ts = "%Y-%m-%dT%H:%M:%S%.3fZ"
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("delivered").str.to_date(),
        *(pl.col(c).str.to_datetime(ts, time_unit="ms") for c in ("occurred_at", "sent_at", "received_at")),
    )

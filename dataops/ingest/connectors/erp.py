"""ERP connector: SQL against the SQLite database, by ``updated_at`` watermark within the window."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import polars as pl

from dataops.ingest.connectors import SourceUnavailable, nulls_as_text, with_day


class ErpExtractor:
    system = "erp"
    watermark_column: str | None = "updated_at"

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def extract(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        if not self.db_path.exists():
            raise SourceUnavailable(f"ERP database not found at {self.db_path}; run `dataops simulate` first")
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            known = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
            if table not in known:
                raise SourceUnavailable(f"ERP has no table {table!r} (tables: {sorted(known)})")
            cur = conn.execute(
                f"select * from {table} where updated_at >= ? and updated_at < ? order by updated_at",
                (f"{start.isoformat()} 00:00:00", f"{(end + dt.timedelta(days=1)).isoformat()} 00:00:00"),
            )
            names = [c[0] for c in cur.description]
            df = pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)
        finally:
            conn.close()
        return with_day(nulls_as_text(df), pl.col("updated_at").str.slice(0, 10).str.to_date(), start, end)

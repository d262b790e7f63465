"""ERP connector: SQL against the SQLite database, by ``updated_at`` watermark within the window."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import polars as pl

from dataops.ingest.connectors import SourceDataError, SourceUnavailable, nulls_as_text, with_day


class ErpExtractor:
    system = "erp"
    watermark_column: str | None = "updated_at"

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def extract(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        where = f"ERP table {table} in {self.db_path} (business dates {start}..{end})"
        if not self.db_path.exists():
            raise SourceDataError(f"{where}: the database does not exist; run `dataops simulate` first")
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            known = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
            if table not in known:
                raise SourceDataError(f"{where}: no such table (tables: {sorted(known)})")
            cur = conn.execute(
                f"select * from {table} where updated_at >= ? and updated_at < ? order by updated_at",
                (f"{start.isoformat()} 00:00:00", f"{(end + dt.timedelta(days=1)).isoformat()} 00:00:00"),
            )
            names = [c[0] for c in cur.description]
            df = pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)
        except sqlite3.OperationalError as exc:  # locked or busy: the database may answer on the next attempt
            raise SourceUnavailable(f"{where}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise SourceDataError(f"{where}: {exc}") from exc
        finally:
            conn.close()
        return with_day(nulls_as_text(df), pl.col("updated_at").str.slice(0, 10).str.to_date(), start, end)

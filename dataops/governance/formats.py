"""Query results as JSON, CSV or Arrow, the same for both doors."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from typing import Any

import pyarrow as pa

from dataops.governance.gateway import QueryResult

FORMATS = ("json", "csv", "arrow", "table")


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def to_json(result: QueryResult) -> str:
    return json.dumps(
        {
            "columns": result.columns,
            "rows": [dict(zip(result.columns, map(_plain, row), strict=True)) for row in result.rows],
            "row_count": len(result.rows),
            "truncated": result.truncated,
            "notes": result.notes,
        },
        default=str,
    )


def to_csv(result: QueryResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([[_plain(v) for v in row] for row in result.rows])
    return buf.getvalue()


def to_arrow(result: QueryResult) -> bytes:
    table = (
        pa.Table.from_pylist([dict(zip(result.columns, row, strict=True)) for row in result.rows])
        if result.rows
        else pa.table({c: pa.array([], pa.string()) for c in result.columns})
    )
    table = table.replace_schema_metadata({"truncated": str(result.truncated).lower()})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()

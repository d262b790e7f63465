"""Query results as JSON, CSV, Arrow or Parquet, the same for both doors.

Column names need not be unique (``select a.id, b.id``): CSV and Arrow keep them as they are; JSON rows are
objects keyed by ``columns``, where a repeated name gets a suffix (``id``, ``id_2``), and ``names`` keeps
them as DuckDB gave them, so no value is lost. Parquet names its columns as JSON's ``columns``.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataops.governance.gateway import QueryResult

FORMATS = ("json", "csv", "arrow", "parquet", "table")


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return value


def unique_names(names: list[str]) -> list[str]:
    """The names, a repeated one suffixed ``_2``, ``_3`` ... (never a suffix that is another column's name)."""
    taken, seen, out = set(names), set(), []
    for name in names:
        key, n = name, 1
        while key in seen or (key != name and key in taken):
            n += 1
            key = f"{name}_{n}"
        seen.add(key)
        out.append(key)
    return out


def to_json(result: QueryResult) -> str:
    keys = unique_names(result.columns)
    return json.dumps(
        {
            "columns": keys,
            "names": result.columns,
            "types": result.types,
            "rows": [dict(zip(keys, map(_plain, row), strict=True)) for row in result.rows],
            "row_count": len(result.rows),
            "truncated": result.truncated,
            "cut_by": result.cut_by,
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
    columns = list(zip(*result.rows, strict=True)) if result.rows else [() for _ in result.columns]
    arrays = [pa.array(list(values)) if result.rows else pa.array([], pa.string()) for values in columns]
    table = pa.Table.from_arrays(arrays, names=result.columns)
    table = table.replace_schema_metadata({"truncated": str(result.truncated).lower()})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def to_parquet(result: QueryResult) -> bytes:
    """The Arrow result as one Parquet file, for the tools that open files (a download from the query page);
    its column names unique as in JSON, since Parquet readers cannot tell two columns of one name apart."""
    table = pa.ipc.open_stream(to_arrow(result)).read_all()
    table = table.rename_columns(unique_names(result.columns))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()

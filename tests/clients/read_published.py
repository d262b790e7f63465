"""Run by an analyst's own DuckDB for Python (a client environment under .clients/, not the project's): open a
published file read-only, run one query, close it, print what it saw as one JSON line; again and again until
the stop file exists, then once more. Any error ends it with a traceback and a non-zero status."""

import json
import sys
import time
from pathlib import Path

import duckdb


def main() -> None:
    path, stop, sql = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    while True:
        last = stop.exists()
        conn = duckdb.connect(path, read_only=path != ":memory:")  # in memory: to read Parquet
        try:
            rows = conn.execute(sql).fetchall()
        finally:
            conn.close()
        print(json.dumps({"duckdb": duckdb.__version__, "rows": [[str(v) for v in row] for row in rows]}), flush=True)
        if last:
            return
        time.sleep(0.2)


if __name__ == "__main__":
    main()

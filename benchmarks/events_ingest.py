"""How fast the event stream's micro-batches land: ``python -m benchmarks.events_ingest``.

Simulates a window at a scale factor in a scratch directory (not timed), then ingests every delivered object
in a child process, one batch per ``--batch-hours`` hours of delivery (the sensor's micro-batches, coarser),
and reports the lines and events per second by wall clock and by the child's CPU time, and the child's peak
resident memory. DuckDB runs on one thread in each batch (dataops/ingest/events.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from itertools import groupby
from pathlib import Path
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def ingest_all(data_dir: Path, batch_hours: int) -> dict[str, Any]:
    """Ingest every pending object of ``data_dir``, batch by batch (run in the child process)."""
    from dataops.core.settings import Settings
    from dataops.ingest import events

    settings = Settings(data_dir)
    todo = events.pending(settings)
    first = todo[0].delivered_at if todo else dt.datetime.now(dt.UTC)
    totals = {"batches": 0, "objects": 0, "lines": 0, "events": 0, "landed": 0, "duplicates": 0, "quarantined": 0}
    started = time.perf_counter()
    for _, chunk in groupby(todo, key=lambda o: int((o.delivered_at - first).total_seconds() // (3600 * batch_hours))):
        report = events.ingest_events(settings, list(chunk))
        totals["batches"] += 1
        totals["objects"] += len(report.objects)
        for name in ("lines", "events", "landed", "duplicates", "quarantined"):
            totals[name] += getattr(report, name)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lake_bytes = sum(p.stat().st_size for p in (settings.lake_dir / "raw" / "product").rglob("*.parquet"))
    return {**totals, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "lake_bytes": lake_bytes}


def measure(scale: float = 1.0, days: int = 7, batch_hours: int = 1, seed: int = 42) -> dict[str, Any]:
    from source_systems.simulator.config import SimConfig
    from source_systems.simulator.run import simulate

    start = dt.date(2025, 3, 3)
    with tempfile.TemporaryDirectory(prefix="events-ingest-bench-") as scratch:
        root = Path(scratch)
        simulate(root / "sources", start + dt.timedelta(days=days - 1), SimConfig(seed=seed, scale=scale, start=start))
        gz = sum(p.stat().st_size for p in (root / "sources" / "product" / "events").rglob("*.gz"))
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.events_ingest", "--child", str(root), "--batch-hours", str(batch_hours)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "scale": scale,
        "days": days,
        "batch_hours": batch_hours,
        **result,
        "gzip_bytes": gz,
        "lines_per_s_wall": result["lines"] / result["wall_s"],
        "lines_per_s_cpu": result["lines"] / result["cpu_s"],
        "events_landed_per_s_wall": result["landed"] / result["wall_s"],
        "peak_rss_bytes": peak,
        "load_average": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--batch-hours", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        result = ingest_all(options.child, options.batch_hours)
    else:
        result = measure(options.scale, options.days, options.batch_hours, options.seed)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

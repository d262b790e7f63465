"""How fast the simulator generates and writes the product's event stream: ``python -m benchmarks.events``.

Simulates a window at a scale factor in a scratch directory and reports the lines the collectors delivered
per second of the product step (generating the day's usage, its delivery and dirt, rendering, compressing
and writing the objects and manifests), by wall clock and by the process's CPU time. Run it with
``POLARS_MAX_THREADS=1`` (the default here) to measure one core; the business's own simulation and the
truth are timed apart, not counted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, before polars is imported
os.environ.setdefault("OMP_NUM_THREADS", "1")


def measure(scale: float = 1.0, days: int = 7, seed: int = 42, start: dt.date = dt.date(2025, 3, 3)) -> dict[str, Any]:
    """Simulate ``days`` days at ``scale`` and return the event stream's generation speed."""
    from source_systems.product import EVENTS_DIR
    from source_systems.simulator.config import SimConfig
    from source_systems.simulator.run import simulate

    with tempfile.TemporaryDirectory(prefix="events-bench-") as scratch:
        sources = Path(scratch) / "sources"
        started = time.perf_counter()
        summary = simulate(sources, start + dt.timedelta(days=days - 1), SimConfig(seed=seed, scale=scale, start=start))
        total = time.perf_counter() - started
        written = sum(p.stat().st_size for p in sources.joinpath(*EVENTS_DIR).rglob("*.gz"))
    return {
        "scale": scale,
        "days": days,
        "start": start.isoformat(),
        "polars_max_threads": os.environ.get("POLARS_MAX_THREADS"),
        "lines": summary.product_lines,
        "lines_per_day": summary.product_lines / days,
        "product_wall_s": summary.product_wall_s,
        "product_cpu_s": summary.product_cpu_s,
        "product_kernel_s": summary.product_kernel_s,  # of the CPU time, the kernel's (page faults above all)
        "lines_per_s_wall": summary.product_lines / summary.product_wall_s,
        "lines_per_s_cpu": summary.product_lines / summary.product_cpu_s,
        "gzip_bytes": written,
        "simulation_wall_s": total,
        "load_average": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args(argv)
    result = measure(options.scale, options.days, options.seed)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

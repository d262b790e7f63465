"""How fast gzip encoders compress the collectors' lines: ``python -m benchmarks.events_gzip``.

The writer's largest single cost is gzip (decision 0066). This simulates a day at a scale factor (or reads
objects already written, ``--sources``), decompresses its objects, and times each encoder at each level on
the same lines: one call per object, best of ``--repeat`` by CPU time, with the compressed size. isal (the
project's) and the standard library's zlib always; zlib-ng's and libdeflate's bindings (``zlib_ng``,
``deflate``) when they are installed, e.g. ``uv run --with zlib-ng --with deflate python -m
benchmarks.events_gzip``: they are not the project's dependencies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")

Encoder = Callable[[bytes], bytes]


def encoders() -> dict[str, Encoder]:
    """Every encoder to time, by name and level: gzip output (wbits 31) each."""
    from isal import isal_zlib

    def level_of(compress: Callable[[bytes, int, int], bytes], level: int) -> Encoder:
        return lambda data: compress(data, level, 31)

    found = {f"isal {level}": level_of(isal_zlib.compress, level) for level in (0, 1, 2, 3)}
    found["zlib 1"] = level_of(zlib.compress, 1)
    try:
        from zlib_ng import zlib_ng

        found |= {f"zlib-ng {level}": level_of(zlib_ng.compress, level) for level in (1, 2)}
    except ImportError:
        pass
    try:
        import deflate

        found |= {
            f"libdeflate {level}": level_of(lambda d, lv, _: deflate.gzip_compress(d, lv), level) for level in (1, 2)
        }
    except ImportError:
        pass
    return found


def bodies(sources: Path) -> list[bytes]:
    """The decompressed content of every object under ``sources``' product events."""
    from source_systems.product import EVENTS_DIR

    return [gzip.decompress(p.read_bytes()) for p in sorted(sources.joinpath(*EVENTS_DIR).rglob("*.ndjson.gz"))]


def measure(data: list[bytes], repeat: int) -> list[dict[str, Any]]:
    total = sum(len(b) for b in data)
    lines = sum(b.count(b"\n") for b in data)
    rows = []
    for name, encode in encoders().items():
        best, size = float("inf"), 0
        for _ in range(repeat):
            started = time.process_time()
            size = sum(len(encode(b)) for b in data)
            best = min(best, time.process_time() - started)
        rows.append(
            {
                "encoder": name,
                "us_per_line": round(best * 1e6 / lines, 3),
                "mb_per_s": round(total / best / 1e6),
                "ratio": round(size / total, 3),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--sources", type=Path, help="a simulated sources folder (default: simulate a day)")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args(argv)
    if options.sources:
        data = bodies(options.sources)
    else:
        from source_systems.simulator.config import SimConfig
        from source_systems.simulator.run import simulate

        start = dt.date(2025, 3, 4)  # a Tuesday
        with tempfile.TemporaryDirectory(prefix="events-gzip-") as scratch:
            simulate(Path(scratch), start, SimConfig(seed=42, scale=options.scale, start=start))
            data = bodies(Path(scratch))
    result = {
        "objects": len(data),
        "lines": sum(b.count(b"\n") for b in data),
        "bytes": sum(len(b) for b in data),
        "encoders": measure(data, options.repeat),
        "load_average": list(os.getloadavg()),
    }
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

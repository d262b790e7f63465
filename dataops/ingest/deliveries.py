"""What the accounting export folder holds, read the way the sensor needs it: day -> manifest version."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path


def export_versions(exports: Path, first: dt.date | None = None) -> dict[str, int]:
    """Every delivered day's manifest version (a corrected re-export raises it)."""
    out: dict[str, int] = {}
    if not exports.exists():
        return out
    for manifest in sorted(exports.glob("*/manifest.json")):
        day = manifest.parent.name
        if day.startswith(".") or (first and day < first.isoformat()):
            continue
        try:
            out[day] = int(json.loads(manifest.read_text())["version"])
        except (ValueError, KeyError, OSError):
            continue  # being rewritten right now: seen on the next tick
    return out


def new_deliveries(seen: dict[str, int], current: dict[str, int]) -> list[tuple[str, int]]:
    """Manifests not yet acted on: a new day, or a higher version of a known one."""
    return [(day, version) for day, version in sorted(current.items()) if seen.get(day, 0) < version]

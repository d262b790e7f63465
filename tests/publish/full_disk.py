"""One publish on a disk with too little room left, then another once the room is back, in a child process.

``python -m tests.publish.full_disk <mode> <data_dir> <day> <room_bytes>`` prints one JSON line. Mode
``tmpfs`` runs inside a private mount namespace (``unshare``) with the warehouse folder on a tmpfs that has
``room_bytes`` free; mode ``fsize`` caps the size of any file the process writes at ``room_bytes`` instead,
where no namespace can be made (the write fails with "File too large" rather than "No space left").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from dataops.core.settings import Settings
from dataops.core.warehouse import connect
from dataops.publish.analyst_warehouse import publish


def state(settings: Settings) -> dict[str, Any]:
    """What a failed publish must not change, and what it must not leave behind."""
    with connect(settings.build_db, read_only=True) as conn:
        recorded = sorted(r[0] for r in conn.execute("select publish_id from publish.publish_log").fetchall())
    with connect(settings.analytics_db, read_only=True) as conn:
        seen = sorted(r[0] for r in conn.execute("select publish_id from publish.publish_log").fetchall())
    return {
        "recorded": recorded,
        "seen": seen,
        "analyst_file": hashlib.sha256(settings.analytics_db.read_bytes()).hexdigest(),
        "files": sorted(p.name for p in settings.warehouse_dir.iterdir()),
    }


def on_tmpfs(warehouse: Path, room: int) -> int:
    """Move the warehouse folder onto a tmpfs with ``room`` bytes to spare; returns its size."""
    aside = warehouse.with_name("warehouse.disk")
    warehouse.rename(aside)
    warehouse.mkdir()
    used = sum(p.stat().st_size for p in aside.iterdir())
    size = (used + room) // 4096 * 4096
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(warehouse)], check=True)
    for path in aside.iterdir():
        shutil.copy2(path, warehouse / path.name)
    return size


def main(mode: str, root: str, day: str, room: str) -> None:
    settings = Settings(Path(root))
    window = (dt.date.fromisoformat(day), dt.date.fromisoformat(day))
    before = state(settings)
    if mode == "tmpfs":
        size = on_tmpfs(settings.warehouse_dir, int(room))
    else:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(room), resource.RLIM_INFINITY))
    try:
        publish(settings, window, run_id="full-disk")
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    after_failure = state(settings)
    if mode == "tmpfs":  # the room comes back
        subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(settings.warehouse_dir)], check=True)
    else:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    report = publish(settings, window, run_id="after")
    print(
        json.dumps(
            {
                "before": before,
                "error": error,
                "after_failure": after_failure,
                "published": report.publish_id,
                "changed": report.changed_values,
                "restated": report.restatements,
                "after": state(settings),
                "kpis": _kpis(settings),
            }
        )
    )


def _kpis(settings: Settings) -> list[list[str]]:
    with connect(settings.analytics_db, read_only=True) as conn:
        rows = conn.execute("select date_day, kpi_name, value, is_final from kpis.kpi_daily order by all").fetchall()
    return [[str(v) for v in row] for row in rows]


if __name__ == "__main__":
    main(*sys.argv[1:])

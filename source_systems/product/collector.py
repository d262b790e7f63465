"""The product's collector fleet as it writes to storage: hourly objects per instance, then the hour's manifest.

Three instances behind a load balancer each write what they received in a UTC hour as one gzip-compressed
NDJSON object (``date=YYYY-MM-DD/hour=HH/events-<instance>.ndjson.gz``), lines in order of receipt; once
every instance's object of an hour is there, the hour's ``manifest.json`` (each object's lines, bytes and
sha256, and when the hour was delivered). Every file is written aside and renamed into place, objects first,
manifest last. What arrives, and when, is the simulator's business (``simulator/events.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
from isal import isal_zlib

from source_systems.product import catalog
from source_systems.product.render import Lines

EVENT, TRUNCATED, MALFORMED = range(3)  # a line: an event, a copy cut off at an object's end, junk


def object_path(root: Path, start: dt.date, receive_day: int, hour: int, collector: int) -> Path:
    date = (start + dt.timedelta(days=receive_day)).isoformat()
    return root / f"date={date}" / f"hour={hour:02d}" / f"events-{catalog.COLLECTORS[collector]}.ndjson.gz"


def write_day(
    root: Path, start: dt.date, main: pl.DataFrame, extra: pl.DataFrame, hours: list[tuple[int, int, bool]]
) -> dict[str, list[str]]:
    """Write a day's objects, then the manifest of every hour complete that day (``hours``: receive day,
    hour, whether its last object was held back); the unreadable lines written, by kind, as object:line.

    ``main`` holds the day's lines in the order they are written; ``extra`` (lines generated on earlier
    days, malformed ones) is merged into its objects by time of receipt.
    """
    extra = extra.sort("receive_day", "hour", "collector", "sort_ms", "seq")
    lines, more = Lines(main["line"]), Lines(extra["line"], contiguous=True)
    obj, extra_obj = _object_keys(main), _object_keys(extra)
    sort_ms, extra_ms = main["sort_ms"].to_numpy(), extra["sort_ms"].to_numpy()
    flags = np.concatenate([main["flag"].to_numpy(), extra["flag"].to_numpy()])
    written: dict[Path, dict[str, object]] = {}
    bad: dict[str, list[str]] = {"truncated_object": [], "malformed_line": []}
    for key in np.union1d(obj, extra_obj).tolist():
        a, b = _run(obj, key)
        ea, eb = _run(extra_obj, key)
        # each extra line goes before the object's own lines received at the same time (it was generated first)
        at = np.searchsorted(sort_ms[a:b], extra_ms[ea:eb], side="left") + a
        squeeze = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        out: list[bytes] = []
        order: list[np.ndarray] = []  # the rows written, in order (extra rows numbered after the main ones)
        cursor = a
        # extra lines that go in at the same place are written together
        starts = np.flatnonzero(np.diff(at, prepend=-1))
        stops = np.append(starts[1:], len(at)) if len(at) else starts
        for first, stop, pos in zip((starts + ea).tolist(), (stops + ea).tolist(), at[starts].tolist(), strict=True):
            out += [squeeze.compress(piece) for piece in lines.pieces(cursor, pos)]
            out += [squeeze.compress(piece) for piece in more.pieces(first, stop)]
            order += [np.arange(cursor, pos), np.arange(first, stop) + main.height]
            cursor = pos
        out += [squeeze.compress(piece) for piece in lines.pieces(cursor, b)]
        order.append(np.arange(cursor, b))
        blob = b"".join([*out, squeeze.flush()])
        receive_day, rest = divmod(int(key), 72)
        path = object_path(root, start, receive_day, rest // 3, rest % 3)
        _atomic(path, blob)
        rows = np.concatenate(order)
        written[path] = {"lines": len(rows), "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        name = path.relative_to(root).as_posix()
        for kind, code in (("truncated_object", TRUNCATED), ("malformed_line", MALFORMED)):
            at_line = np.flatnonzero(flags[rows] == code) + 1
            bad[kind] += [f"{name}:{i}" for i in at_line.tolist()]
    for receive_day, hour, delayed in hours:
        _manifest(root, start, receive_day, hour, delayed, written)
    return bad


def _object_keys(lines: pl.DataFrame) -> np.ndarray:
    """One number per (receive day, hour, collector), in the order objects are written."""
    return np.asarray(
        (lines["receive_day"].to_numpy() * 24 + lines["hour"].to_numpy()) * 3 + lines["collector"].to_numpy(),
        dtype=np.int64,
    )


def _run(keys: np.ndarray, key: int) -> tuple[int, int]:
    """The rows of a sorted key array equal to ``key``."""
    return int(np.searchsorted(keys, key, side="left")), int(np.searchsorted(keys, key, side="right"))


def _manifest(
    root: Path, start: dt.date, receive_day: int, hour: int, delayed: bool, written: dict[Path, dict[str, object]]
) -> None:
    objects = []
    for c, name in enumerate(catalog.COLLECTORS):
        path = object_path(root, start, receive_day, hour, c)
        info = written.get(path) or _describe(path)
        objects.append({"name": path.name, "collector": name, **info})
    hour_start = dt.datetime.combine(start + dt.timedelta(days=receive_day), dt.time(hour))
    delivered = hour_start + dt.timedelta(hours=1, minutes=2)
    if delayed:
        delivered = dt.datetime.combine(start + dt.timedelta(days=receive_day + 1), dt.time(3, 17))
    manifest = {
        "date": (start + dt.timedelta(days=receive_day)).isoformat(),
        "hour": hour,
        "delivered_at": delivered.isoformat() + "Z",
        "objects": objects,
    }
    _atomic(path.parent / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())


def _describe(path: Path) -> dict[str, object]:
    """Lines, size and checksum of an object written on an earlier day."""
    if not path.exists():
        return {"lines": 0, "bytes": 0, "sha256": None}
    blob = path.read_bytes()
    body = isal_zlib.decompress(blob, wbits=47)
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    return {"lines": lines, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def _atomic(path: Path, data: bytes) -> None:
    """Write aside, then rename into place: a reader sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

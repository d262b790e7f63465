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
LAST = 2**62  # a truncated line's time of receipt as the writer orders it: last in its object


def object_path(root: Path, start: dt.date, receive_day: int, hour: int, collector: int) -> Path:
    date = (start + dt.timedelta(days=receive_day)).isoformat()
    return root / f"date={date}" / f"hour={hour:02d}" / f"events-{catalog.COLLECTORS[collector]}.ndjson.gz"


def write_day(
    root: Path, start: dt.date, main: pl.DataFrame, extra: pl.DataFrame, hours: list[tuple[int, int, bool]]
) -> dict[str, list[str]]:
    """Write a day's objects, then the manifest of every hour complete that day (``hours``: receive day,
    hour, whether its last object was held back); the unreadable lines written, by kind, as object:line.

    ``main`` holds the day's lines in the order they are written; ``extra`` (lines generated on earlier
    days, malformed ones) is merged into its objects by time of receipt. The day's written order, and its
    runs of lines back to back in memory, are found for all objects at once (vectorised): what is left per
    object is compressing its runs and writing the file.
    """
    extra = extra.sort("receive_day", "hour", "collector", "sort_ms", "seq")
    lines, more = Lines(main["line"]), Lines(extra["line"], contiguous=True)
    data = [*lines.data, *more.data]
    key, row = _written_order(main, extra)
    buffer = np.concatenate([lines.buffer, more.buffer + len(lines.data)])[row]
    begin = np.concatenate([lines.start, more.start])[row]
    end = begin + np.concatenate([lines.length, more.length])[row]
    # a run: consecutive lines of one object that lie back to back in one buffer, compressed as one piece
    follows = (key[1:] == key[:-1]) & (buffer[1:] == buffer[:-1]) & (begin[1:] == end[:-1])
    first = np.flatnonzero(np.concatenate([[True], ~follows]))[: len(key)]
    last = np.append(first[1:], len(key)) - 1
    heads = np.flatnonzero(np.diff(key[first], prepend=-1))  # each object's first run
    bounds = np.append(heads, len(first)).tolist()
    rows_at = np.append(first[heads], len(key))  # each object's first line in the written order
    runs = list(zip(buffer[first].tolist(), begin[first].tolist(), end[last].tolist(), strict=True))
    written: dict[int, dict[str, object]] = {}
    names = []
    for i, obj in enumerate(key[first[heads]].tolist()):
        squeeze = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        out = [squeeze.compress(data[buf][a:b]) for buf, a, b in runs[bounds[i] : bounds[i + 1]]]
        blob = b"".join([*out, squeeze.flush()])
        path = object_path(root, start, *_object(obj))
        _atomic(path, blob)
        lines_in = int(rows_at[i + 1] - rows_at[i])
        written[obj] = {"lines": lines_in, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        names.append(path.relative_to(root).as_posix())
    flags = np.concatenate([main["flag"].to_numpy(), extra["flag"].to_numpy()])[row]
    bad: dict[str, list[str]] = {}
    for kind, code in (("truncated_object", TRUNCATED), ("malformed_line", MALFORMED)):
        at = np.flatnonzero(flags == code)
        of = np.searchsorted(rows_at, at, side="right") - 1
        bad[kind] = [f"{names[o]}:{k}" for o, k in zip(of.tolist(), (at - rows_at[of] + 1).tolist(), strict=True)]
    for receive_day, hour, delayed in hours:
        _manifest(root, start, receive_day, hour, delayed, written)
    return bad


def _written_order(main: pl.DataFrame, extra: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every line's object key and row (extra rows numbered after the main ones), in the order written.

    Both frames come ordered by object and time of receipt (a truncated line last, ``sort_ms`` LAST); each
    extra line goes before the object's own lines received at the same time (it was generated first): its
    place is one search of its object and time among the main lines' (the two packed into one integer).
    """
    obj, extra_obj = _object_keys(main), _object_keys(extra)
    ms, extra_ms = main["sort_ms"].to_numpy(), extra["sort_ms"].to_numpy()
    m, e = len(obj), len(extra_obj)
    if e == 0:
        return obj, np.arange(m)
    times = np.concatenate([ms, extra_ms])
    real = times[times < LAST]
    low = int(real.min()) if len(real) else 0
    width = (int(real.max()) - low + 2) if len(real) else 1  # the widest time, then LAST
    if int(max(obj.max(initial=0), extra_obj.max())) >= 2**62 // width:  # days of objects times days of times
        raise ValueError("write_day: objects and times of receipt too far apart to pack into one integer")
    packed = obj * width + np.minimum(ms - low, width - 1)
    at = np.searchsorted(packed, extra_obj * width + np.minimum(extra_ms - low, width - 1), side="left")
    placed = at + np.arange(e)  # where each extra line is written
    row = np.empty(m + e, dtype=np.int64)
    mine = np.ones(m + e, dtype=bool)
    mine[placed] = False
    row[mine] = np.arange(m)
    row[placed] = m + np.arange(e)
    key = np.empty(m + e, dtype=np.int64)
    key[mine] = obj
    key[placed] = extra_obj
    return key, row


def _object_keys(lines: pl.DataFrame) -> np.ndarray:
    """One number per (receive day, hour, collector), in the order objects are written."""
    return np.asarray(
        (lines["receive_day"].to_numpy() * 24 + lines["hour"].to_numpy()) * 3 + lines["collector"].to_numpy(),
        dtype=np.int64,
    )


def _object(key: int) -> tuple[int, int, int]:
    """An object key's receive day, hour and collector."""
    receive_day, rest = divmod(key, 72)
    return receive_day, rest // 3, rest % 3


def _manifest(
    root: Path, start: dt.date, receive_day: int, hour: int, delayed: bool, written: dict[int, dict[str, object]]
) -> None:
    objects = []
    for c, name in enumerate(catalog.COLLECTORS):
        path = object_path(root, start, receive_day, hour, c)
        info = written.get((receive_day * 24 + hour) * 3 + c) or _describe(path)
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
    """Write aside, then rename into place: a reader sees the whole file or none of it.

    The folder is made only when the file cannot be written without it (an hour's later files find it).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
    except FileNotFoundError:  # the folder's first file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
    os.replace(tmp, path)

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


class Objects:
    """A day's objects, written as its lines are rendered: each batch of lines is compressed into its objects
    as it comes, so a day's text is never all in memory (a batch's memory is reused by the next one rather than
    fresh memory paid for in page faults), then the manifest of every hour complete that day.

    ``main`` (without its lines) holds the rows of the day's lines in the order they are written, its lines
    given batch by batch to ``add``; ``extra`` (lines generated on earlier days, malformed ones) is merged into
    its objects by time of receipt. The written order is found for the whole day at once (vectorised), and in
    each batch the runs of lines back to back in memory: what is left per object is compressing its runs and
    writing the file.
    """

    def __init__(self, root: Path, start: dt.date, main: pl.DataFrame, extra: pl.DataFrame) -> None:
        self.root, self.start = root, start
        extra = extra.sort("receive_day", "hour", "collector", "sort_ms", "seq")
        self.more = Lines(extra["line"], contiguous=True)
        self.key, self.row = _written_order(main, extra)
        self.m = main.height
        self.mine = np.flatnonzero(self.row < self.m)  # where each main row is written
        self.flags = np.concatenate([main["flag"].to_numpy(), extra["flag"].to_numpy()])[self.row]
        self.fed = 0  # main rows given so far
        self.done = 0  # lines compressed so far, in the order written
        self.object = -1
        self.squeeze = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        self.out: list[bytes] = []
        self.written: dict[int, dict[str, object]] = {}
        self.names: dict[int, str] = {}

    def add(self, lines: pl.Series) -> None:
        """The lines of the next main rows, in order."""
        a, b = self.fed, self.fed + lines.len()
        if b > self.m:
            raise ValueError("Objects.add: more lines than rows")
        self.fed = b
        # every line written before the next batch's first: extra lines that go before it too
        self._compress(Lines(lines), a, int(self.mine[b]) if b < self.m else len(self.key))

    def close(self, hours: list[tuple[int, int, bool]]) -> dict[str, list[str]]:
        """Finish the objects, then write the manifest of every hour complete that day (``hours``: receive
        day, hour, whether its last object was held back); the unreadable lines written, by kind, as
        object:line."""
        if self.fed < self.m:
            raise ValueError("Objects.close: rows without lines")
        self._compress(Lines(pl.Series([], dtype=pl.String)), self.fed, len(self.key))
        self._finish()
        starts = np.flatnonzero(np.diff(self.key, prepend=-1))  # each object's first line
        bad: dict[str, list[str]] = {}
        for kind, code in (("truncated_object", TRUNCATED), ("malformed_line", MALFORMED)):
            at = np.flatnonzero(self.flags == code)
            first = starts[np.searchsorted(starts, at, side="right") - 1]
            bad[kind] = [
                f"{self.names[k]}:{i}" for k, i in zip(self.key[at].tolist(), (at - first + 1).tolist(), strict=True)
            ]
        for receive_day, hour, delayed in hours:
            _manifest(self.root, self.start, receive_day, hour, delayed, self.written)
        return bad

    def _compress(self, batch: Lines, a: int, stop: int) -> None:
        """Compress the lines written from ``self.done`` to ``stop``: main rows from ``a`` on in ``batch``."""
        key, row = self.key[self.done : stop], self.row[self.done : stop]
        self.done = stop
        if len(key) == 0:
            return
        buffer, begin, end = (np.empty(len(row), dtype=np.int64) for _ in range(3))
        for at, lines, rows, shift in (
            (np.flatnonzero(row < self.m), batch, row - a, 0),  # the batch's lines
            (np.flatnonzero(row >= self.m), self.more, row - self.m, len(batch.data)),  # the extra lines
        ):
            buffer[at], begin[at], end[at] = lines.at(rows[at])
            buffer[at] += shift
        data = [*batch.data, *self.more.data]
        # a run: consecutive lines of one object that lie back to back in one buffer, compressed as one piece
        follows = (key[1:] == key[:-1]) & (buffer[1:] == buffer[:-1]) & (begin[1:] == end[:-1])
        first = np.flatnonzero(np.concatenate([[True], ~follows]))
        last = np.append(first[1:], len(key)) - 1
        runs = zip(key[first].tolist(), buffer[first].tolist(), begin[first].tolist(), end[last].tolist(), strict=True)
        for obj, buf, lo, hi in runs:
            if obj != self.object:
                self._finish()
                self.object = obj
            self.out.append(self.squeeze.compress(data[buf][lo:hi]))

    def _finish(self) -> None:
        """Write the object being compressed, if any."""
        if self.object < 0:
            return
        blob = b"".join([*self.out, self.squeeze.flush()])
        path = object_path(self.root, self.start, *_object(self.object))
        _atomic(path, blob)
        lines = int(np.searchsorted(self.key, self.object, "right") - np.searchsorted(self.key, self.object, "left"))
        self.written[self.object] = {"lines": lines, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        self.names[self.object] = path.relative_to(self.root).as_posix()
        self.squeeze = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        self.out = []
        self.object = -1


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
        raise ValueError("Objects: objects and times of receipt too far apart to pack into one integer")
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

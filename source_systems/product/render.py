"""Fast text for a million events a day: hex ids and ISO timestamps built as byte matrices in numpy.

Formatting one value at a time (or with strftime) would cost more than the rest of the simulation; a
fixed-width field is instead assembled column by column from lookup tables and handed to polars as one
buffer. ``line_bytes`` gives the bytes of many lines at once, without copying them one by one.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

DAY_MS = 86_400_000
EPOCH = dt.date(1970, 1, 1)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def fixed(mat: np.ndarray) -> pl.Series:
    """Rows of an (n, width) uint8 matrix of ASCII as a string Series."""
    n, width = mat.shape
    buf = pa.py_buffer(np.ascontiguousarray(mat, dtype=np.uint8))
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, buf])
    return pl.Series(pl.from_arrow(arr.cast(pa.large_binary()))).cast(pl.String)


def hex_ids(raw: np.ndarray) -> pl.Series:
    """(n, 16) random bytes as 32 lowercase hex digits each."""
    out = np.empty((raw.shape[0], 2 * raw.shape[1]), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return fixed(out)


@cache
def _time_of_day() -> np.ndarray:
    """'HH:MM:SS.' for every second of a day."""
    sec = np.arange(86_400)
    digits = np.frombuffer(b"0123456789", dtype=np.uint8)
    out = np.empty((86_400, 9), dtype=np.uint8)
    for col, value in ((0, sec // 3600), (3, sec // 60 % 60), (6, sec % 60)):
        out[:, col] = digits[value // 10]
        out[:, col + 1] = digits[value % 10]
    out[:, 2] = out[:, 5] = ord(":")
    out[:, 8] = ord(".")
    return out


@cache
def _millis() -> np.ndarray:
    """'mmmZ' for every millisecond of a second."""
    return np.frombuffer("".join(f"{i:03d}Z" for i in range(1000)).encode(), dtype=np.uint8).reshape(1000, 4)


def iso_ms(ms: np.ndarray) -> pl.Series:
    """Epoch milliseconds as 'YYYY-MM-DDTHH:MM:SS.mmmZ'."""
    ms = np.asarray(ms, dtype=np.int64)
    if len(ms) == 0:
        return pl.Series([], dtype=pl.String)
    day = ms // DAY_MS
    first = int(day.min())
    span = int(day.max()) - first + 1
    dates = np.frombuffer(
        "".join((EPOCH + dt.timedelta(days=first + i)).isoformat() + "T" for i in range(span)).encode(),
        dtype=np.uint8,
    ).reshape(span, 11)
    rest = ms - day * DAY_MS
    out = np.empty((len(ms), 24), dtype=np.uint8)
    out[:, :11] = dates[day - first]
    out[:, 11:20] = _time_of_day()[rest // 1000]
    out[:, 20:] = _millis()[rest % 1000]
    return fixed(out)


def line_bytes(lines: pl.Series) -> tuple[memoryview, np.ndarray]:
    """All lines' bytes back to back, and where each line starts (n + 1 offsets)."""
    arr = lines.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    return view, offsets

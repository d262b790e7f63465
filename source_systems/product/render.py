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
from polars import CompatLevel

DAY_MS = 86_400_000
EPOCH = dt.date(1970, 1, 1)


def fixed(mat: np.ndarray) -> pl.Series:
    """Rows of an (n, width) uint8 matrix of ASCII (no NUL bytes) as a string Series.

    Strings longer than a view's inline 12 bytes are handed to polars as Arrow string views over the matrix's
    own memory (one 16-byte view per row, made in numpy): cheaper than having polars convert fixed-size
    numpy bytes.
    """
    n, width = mat.shape
    if n == 0:
        return pl.Series([], dtype=pl.String)
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    if width <= 12:
        return pl.Series(mat.view(f"S{width}").ravel()).cast(pl.String)
    per_buffer = (2**31 - 1) // width  # a view's offset is an int32
    row = np.arange(n, dtype=np.int64)
    views = np.empty((n, 4), dtype=np.int32)
    views[:, 0] = width
    views[:, 1] = np.ascontiguousarray(mat[:, :4]).view(np.int32).ravel()  # the string's first four bytes
    views[:, 2] = row // per_buffer
    views[:, 3] = row % per_buffer * width
    flat = mat.reshape(-1)
    buffers = [pa.py_buffer(flat[a * width : (a + per_buffer) * width]) for a in range(0, n, per_buffer)]
    return pl.Series(_CArray(pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views), *buffers])))


class _CArray:
    """An Arrow array that polars imports through the Arrow C data interface, as it is.

    Given a pyarrow array itself, polars first imports ``pyarrow.compute`` (to cast dictionaries it never
    sees here): 35 ms of CPU once per process, inside the first day's product step.
    """

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def __arrow_c_array__(self, requested_schema: object = None) -> tuple[object, object]:
        return self.array.__arrow_c_array__(requested_schema)


def hex_matrix(raw: np.ndarray) -> np.ndarray:
    """(n, k) bytes as (n, 2k) lowercase hex digits: each byte's two digits picked at once from a table."""
    return _hex_pairs()[raw].view(np.uint8).reshape(raw.shape[0], 2 * raw.shape[1])


@cache
def _hex_pairs() -> np.ndarray:
    """'00' to 'ff' as 256 two-byte items."""
    return np.frombuffer("".join(f"{i:02x}" for i in range(256)).encode(), dtype="V2")


def decimals(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as (n, width) zero-padded decimal digits (``f"{v:0{width}d}"``), a digit column
    at a time: NumPy's own text functions convert one value at a time into wide unicode."""
    values = np.asarray(values, dtype=np.int64)
    if len(values) and (int(values.min()) < 0 or int(values.max()) >= 10**width):
        raise ValueError(f"decimals: values must lie in [0, 10**{width})")
    out = np.empty((len(values), width), dtype=np.uint8)
    rest = values.copy()
    for col in range(width - 1, -1, -1):
        rest, digit = np.divmod(rest, 10)
        out[:, col] = digit + ord("0")
    return out


def hex_ids(raw: np.ndarray) -> pl.Series:
    """(n, k) random bytes as 2k lowercase hex digits each."""
    return fixed(hex_matrix(raw))


@cache
def _time_of_day() -> np.ndarray:
    """'HH:MM:SS' for every second of a day, each as one 8-byte integer (its bytes the text)."""
    sec = np.arange(86_400)
    digits = np.frombuffer(b"0123456789", dtype=np.uint8)
    out = np.empty((86_400, 8), dtype=np.uint8)
    for col, value in ((0, sec // 3600), (3, sec // 60 % 60), (6, sec % 60)):
        out[:, col] = digits[value // 10]
        out[:, col + 1] = digits[value % 10]
    out[:, 2] = out[:, 5] = ord(":")
    return out.view("<u8").ravel()


@cache
def _millis() -> np.ndarray:
    """'mmmZ' for every millisecond of a second, each as one 4-byte integer."""
    return np.frombuffer("".join(f"{i:03d}Z" for i in range(1000)).encode(), dtype="<u4")


def _dates(stamps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """'YYYY-MM-' and 'DD' for every day the epoch-millisecond columns span, as 8- and 2-byte integers, and the
    first day."""
    present = [s for s in stamps if len(s)]
    if not present:
        return np.zeros(0, dtype="<u8"), np.zeros(0, dtype="<u2"), 0
    first = min(int(s.min()) for s in present) // DAY_MS
    span = max(int(s.max()) for s in present) // DAY_MS - first + 1
    text = "".join((EPOCH + dt.timedelta(days=first + i)).isoformat() for i in range(span))
    days = np.frombuffer(text.encode(), dtype=np.uint8).reshape(span, 10)
    return (
        np.ascontiguousarray(days[:, :8]).view("<u8").ravel(),
        np.ascontiguousarray(days[:, 8:]).view("<u2").ravel(),
        first,
    )


def _write_iso(ms: np.ndarray, out: np.ndarray, dates: tuple[np.ndarray, np.ndarray, int]) -> None:
    """Epoch milliseconds as 'YYYY-MM-', 'DD', 'HH:MM:SS' and 'mmmZ' into those fields of ``out`` (its 'T' and
    '.' are literals), each picked from a table straight into its field. The pieces are integers of 8, 4 and 2
    bytes: NumPy copies those in one instruction each, but void items of 11 or 9 bytes byte by byte (27 against
    12 ns a timestamp); floor division by a constant is vectorised, ``divmod`` is not."""
    month, day_of_month, first = dates
    day = ms // DAY_MS
    rest = ms - day * DAY_MS
    second = rest // 1000
    day -= first
    np.take(month, day, out=out["month"], mode="clip")
    np.take(day_of_month, day, out=out["day"], mode="clip")
    np.take(_time_of_day(), second, out=out["time"], mode="clip")
    np.take(_millis(), rest - second * 1000, out=out["milli"], mode="clip")


# 'YYYY-MM-DDTHH:MM:SS.mmmZ': the 'T' and '.' are written with a template's literals
_ISO = np.dtype([("month", "<u8"), ("day", "<u2"), ("T", "V1"), ("time", "<u8"), ("dot", "V1"), ("milli", "<u4")])


def iso_ms(ms: np.ndarray) -> pl.Series:
    """Epoch milliseconds as 'YYYY-MM-DDTHH:MM:SS.mmmZ'."""
    ms = np.asarray(ms, dtype=np.int64)
    return template([ms], len(ms))


def template(parts: list[str | np.ndarray], n: int) -> pl.Series:
    """Fixed-width strings from literal text, epoch-millisecond columns (rendered as ISO timestamps) and
    (n, k) matrices of ASCII bytes (copied as they are).

    A line is a record of fixed-size byte fields back to back (a literal; a byte matrix's row; a timestamp's
    date, time and millisecond pieces). The records are filled a block at a time, a block small enough to stay
    in the processor's cache while each of its fields is written (field by field over all records, every
    field would stream the whole output through memory again); the literals are written once, into a block
    copied to each block of the output.
    """
    fields: list[tuple[str, str | np.dtype]] = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            fields.append((f"p{i}", f"V{len(part.encode())}"))
        elif part.ndim == 2:
            fields.append((f"p{i}", f"V{part.shape[1]}"))
        else:
            fields.append((f"p{i}", _ISO))
    layout = np.dtype(fields)
    block = max(1, BLOCK_BYTES // layout.itemsize)
    literals = np.empty(min(n, block), dtype=layout)
    for i, part in enumerate(parts):
        if isinstance(part, str):
            literals[f"p{i}"] = np.frombuffer(part.encode(), dtype=layout[f"p{i}"])[0]
        elif part.ndim == 1:
            literals[f"p{i}"]["T"], literals[f"p{i}"]["dot"] = np.frombuffer(b"T.", dtype="V1")
    dates = _dates([np.asarray(p, dtype=np.int64) for p in parts if not isinstance(p, str) and p.ndim == 1])
    out = np.empty(n, dtype=layout)
    for a in range(0, n, block):
        b = min(n, a + block)
        chunk = out[a:b]
        chunk.view(np.uint8)[...] = literals[: b - a].view(np.uint8)  # as bytes: one copy, not one per field
        for i, part in enumerate(parts):
            if isinstance(part, str):
                continue
            if part.ndim == 2:
                chunk[f"p{i}"] = np.ascontiguousarray(part[a:b], dtype=np.uint8).view(layout[f"p{i}"]).ravel()
            else:
                _write_iso(np.asarray(part[a:b], dtype=np.int64), chunk[f"p{i}"], dates)
    return fixed(out.view(np.uint8).reshape(n, layout.itemsize))


BLOCK_BYTES = 1 << 20  # a block of records that fits in a core's cache


class Lines:
    """Where the bytes of each line of a string Series are, to compress or write runs of them as they lie.

    Polars keeps the strings of a Series it built back to back in a few buffers, so a run of lines is a few
    slices of those buffers and nothing is copied (a line it replaced later lives elsewhere: one more slice).
    A Series laid out any other way is copied once into one buffer.
    """

    def __init__(self, lines: pl.Series, contiguous: bool = False) -> None:
        """``contiguous``: copy the lines into one buffer in order first (lines a sort scattered in memory
        are then written in runs rather than one by one)."""
        arr = lines.rechunk().to_arrow(compat_level=CompatLevel.newest())
        self.n = len(arr)
        views = None
        if arr.type == pa.string_view() and self.n and not contiguous:
            views = np.frombuffer(arr.buffers()[1], dtype=np.int32).reshape(-1, 4)[arr.offset : arr.offset + self.n]
        if views is not None and (views[:, 0] > 12).all():  # every line out of line, in a buffer
            self.length = views[:, 0].astype(np.int64)
            self.buffer = views[:, 2].astype(np.int64)
            self.start = views[:, 3].astype(np.int64)
            self.data = [memoryview(b) if b is not None else memoryview(b"") for b in arr.buffers()[2:]]
        else:  # polars' own large strings: one buffer, in order (pyarrow's cast would import pyarrow.compute)
            large = lines.rechunk().to_arrow(compat_level=CompatLevel.oldest())
            offsets = np.frombuffer(large.buffers()[1], dtype=np.int64)[large.offset : large.offset + self.n + 1]
            self.data = [memoryview(large.buffers()[2]) if large.buffers()[2] is not None else memoryview(b"")]
            self.buffer = np.zeros(self.n, dtype=np.int64)
            self.start = offsets[:-1]
            self.length = np.diff(offsets)

    def at(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the lines of ``rows`` are: each one's buffer (in ``data``), first byte and end."""
        return self.buffer[rows], self.start[rows], self.start[rows] + self.length[rows]


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

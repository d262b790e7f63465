"""Measuring a run from the inside, with as little intrusion as possible.

* ``RssSampler``: a thread that reads the resident memory of this process *and all its descendants* (dbt
  runs as a subprocess) from ``/proc`` every few milliseconds, so a stage's peak is the largest sample inside
  its intervals.
* ``StageProbe``: wraps a handful of pipeline functions (by attribute, only in the benchmark's process) to
  record when extract, land, load and validate run, when a volume breaker is evaluated inside its ingestion
  step, and how many rows pandera validated in how long. The pipeline code itself is unchanged.
"""

from __future__ import annotations

import bisect
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def tree_rss(pid: int | None = None) -> int:
    """Resident bytes of a process and all its descendants."""
    pending, total, seen = [pid or os.getpid()], 0, set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _rss_bytes(current)
        pending += _children(current)
    return total


class RssSampler:
    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), tree_rss()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), tree_rss()))

    def peak(self, intervals: list[tuple[float, float]] | None = None) -> int:
        """The largest sample (within the intervals if given; the nearest sample if none fell inside)."""
        if not self.samples:
            return 0
        if intervals is None:
            return max(rss for _, rss in self.samples)
        merged = merge(intervals)
        times = [t for t, _ in self.samples]
        best = 0
        for a, b in merged:
            lo, hi = bisect.bisect_left(times, a), bisect.bisect_right(times, b)
            inside = [rss for _, rss in self.samples[lo:hi]]
            if not inside:  # shorter than a sampling interval: the nearest sample
                inside = [self.samples[min(lo, len(self.samples) - 1)][1]]
            best = max(best, *inside)
        return best


def merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@dataclass
class Span:
    stage: str
    start: float
    end: float
    rows: int = 0
    label: str = ""


@dataclass
class StageProbe:
    spans: list[Span] = field(default_factory=list)
    _undo: list[tuple[Any, str, Any]] = field(default_factory=list)

    def _wrap(self, owner: Any, name: str, stage: str, rows: Callable[..., int] | None = None) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        is_classmethod = isinstance(original, classmethod)
        function = original.__func__ if is_classmethod else original
        spans = self.spans

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            try:
                return function(*args, **kwargs)
            finally:
                count = 0
                if rows is not None:
                    try:
                        count = rows(*args, **kwargs)
                    except Exception:
                        count = 0
                label = getattr(args[0], "__name__", "") if is_classmethod and args else ""
                spans.append(Span(stage, start, time.time(), count, label))

        setattr(owner, name, classmethod(timed) if is_classmethod else timed)
        self._undo.append((owner, name, original))

    def install(self) -> StageProbe:
        import pandera.api.polars.model as pandera_polars

        from dataops.ingest import lake, pipeline
        from dataops.ingest.connectors.accounting import AccountingExtractor
        from dataops.ingest.connectors.crm import CrmExtractor
        from dataops.ingest.connectors.erp import ErpExtractor
        from orchestration.lib import brakes

        for extractor in (ErpExtractor, CrmExtractor, AccountingExtractor):
            self._wrap(extractor, "extract", "extract")
        self._wrap(pipeline, "with_lineage", "land")
        self._wrap(lake.VersionWriter, "write", "land")  # a block of days written into the run's version
        self._wrap(pipeline, "read_landed", "load")
        self._wrap(pipeline, "load_range", "load")
        self._wrap(pipeline, "apply_contract", "validate", rows=lambda _c, batch, *_: batch.height)
        self._wrap(brakes, "breaker_result", "breaker")
        self._wrap(pandera_polars.DataFrameModel, "validate", "pandera", rows=lambda _cls, frame, *_a, **_k: len(frame))
        return self

    def remove(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

"""The collectors' lines as the fast renderer writes them mean what a plain, line-by-line rendering of the same
events means: every copy's line, field for field (a truncated one cut at the same place of the same event).

The fast path (``simulator/events.py`` ``_render``: fixed-width records built in numpy, lookups joined by
polars) is checked against a reference written one line at a time in Python from the same draws, with the
fields in the tracking plan's order and timestamps formatted by ``datetime``.
"""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import importlib.abc
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pytest

from source_systems.product import collector, render
from source_systems.simulator import events, memory
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate

pytestmark = pytest.mark.xdist_group("event_rendering")

START = dt.date(2025, 3, 1)
# the property is added and an event renamed within the window; every object has a truncated line now and then
CONFIG = SimConfig(
    seed=23,
    scale=0.03,
    start=START,
    event_property_date=START + dt.timedelta(days=2),
    event_rename_date=START + dt.timedelta(days=3),
    dirt=DirtRates(event_truncated=0.3, event_pii=0.3),
)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reference(
    cfg: SimConfig,
    rng: np.random.Generator,
    d: int,
    ev: pl.DataFrame,
    copies: pl.DataFrame,
    id_hex: np.ndarray,
    properties: tuple[events.Lookup, events.Lookup],
    world: Any,
    users: pl.DataFrame,
) -> list[str]:
    """Each copy's line, one at a time, with the same draws as ``_render`` (in the same order)."""
    names = list(events.catalog.EVENT_TYPES)
    if cfg.start + dt.timedelta(days=d) >= cfg.effective_rename_date:
        for code, name in events.catalog.RENAMED.items():
            names[code] = name

    def text(lookup: events.Lookup, then: str) -> list[str]:
        table, pick = lookup
        values = table.to_list()
        out = [values[p] for p in pick.tolist()]
        assert all(v.endswith(then) for v in out)
        return [v[: len(v) - len(then)] for v in out]

    user = text(events._user_ids(ev, users, ","), ",")
    device = text(events._device_ids(rng, ev, users, ","), ",")
    account = text(events._account_refs(ev, world, ","), ",")
    context = text(events._contexts(rng, ev, ","), ",")
    (heads, head), (tails, tail) = properties
    head_text, tail_text = heads.to_list(), tails.to_list()
    etype = ev["etype"].to_list()
    lines = []
    for row in copies.iter_rows(named=True):
        e = row["ev"]
        props = head_text[head[e]] + tail_text[tail[e]]  # the properties object, then the line's end
        assert props.endswith("}\n")
        lines.append(
            f'{{"event_id":"{bytes(id_hex[e]).decode()}","event_type":"{names[etype[e]]}","user_id":{user[e]},'
            f'"device_id":{device[e]},"account_ref":{account[e]},"context":{context[e]},'
            f'"properties":{props[:-2]},"occurred_at":"{_iso(row["occurred_ms"])}",'
            f'"sent_at":"{_iso(row["sent_ms"])}","received_at":"{_iso(row["received_ms"])}"}}\n'
        )
    truncated = np.flatnonzero(copies["flag"].to_numpy() == events.TRUNCATED)
    for i, share in zip(truncated.tolist(), rng.uniform(0.3, 0.9, size=len(truncated)).tolist(), strict=True):
        lines[i] = lines[i][: int(len(lines[i].encode()) * share)]
    return lines


class Rendered(NamedTuple):
    days: list[tuple[list[str], list[str], np.ndarray]]  # each day's lines: fast, reference, and each line's flag
    advised_inside: list[bool]  # NumPy's huge page advice while each day's lines were made
    advised_after: bool  # and after the simulation (it was on before)
    steps: list[tuple[str, int]]  # ("batch", day) as a batch of lines is rendered, ("object", day) as one is written


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Every day's lines by the fast path and by the reference, and each line's flag."""
    fast = events._render
    days: list[tuple[list[str], list[str], np.ndarray]] = []
    advised: list[bool] = []
    steps: list[tuple[str, int]] = []

    def both(
        cfg: SimConfig, rng: np.random.Generator, d: int, ev: pl.DataFrame, copies: pl.DataFrame, *rest: Any
    ) -> Iterator[tuple[int, pl.Series]]:
        advised.append(_huge_pages_advised())
        twin = copy.deepcopy(rng)
        batches = fast(cfg, rng, d, ev, copies, *rest)
        reference = _reference(cfg, twin, d, ev, copies, *rest)
        assert twin.bit_generator.state == rng.bit_generator.state  # the same draws, in the same order

        def recorded() -> Iterator[tuple[int, pl.Series]]:
            lines = []
            for a, batch in batches:
                steps.append(("batch", d))
                lines += batch.to_list()
                yield a, batch
            days.append((lines, reference, copies["flag"].to_numpy()))

        return recorded()

    real_atomic = collector._atomic

    def atomic(path: Path, data: bytes) -> None:
        if path.name.endswith(".ndjson.gz"):
            steps.append(("object", days_seen()))
        real_atomic(path, data)

    def days_seen() -> int:
        return max((d for step, d in steps if step == "batch"), default=-1)

    assert memory._advise is not None  # the NumPy of this project has the switch
    before = memory._advise(True)  # as NumPy sets it on Linux by default
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(events, "_render", both)
            patch.setattr(events, "RENDER_BATCH", 997)  # a day's lines in many batches
            patch.setattr(collector, "_atomic", atomic)
            simulate(tmp_path_factory.mktemp("render") / "sources", START + dt.timedelta(days=4), CONFIG)
        return Rendered(days, advised, _huge_pages_advised(), steps)
    finally:
        memory._advise(before)


def test_every_line_means_what_the_reference_rendering_means(rendered: Rendered) -> None:
    seen = {"events": 0, "truncated": 0, "renamed": 0, "load_ms": 0, "pii": 0}
    for fast, reference, flag in rendered.days:
        assert len(fast) == len(reference) > 0
        for got, want, kind in zip(fast, reference, flag.tolist(), strict=True):
            if kind == events.TRUNCATED:
                # the same event, cut off at the same share of its line: neither parses, no final newline
                assert got[:45] == want[:45] and len(got.encode()) == len(want.encode())
                assert not got.endswith("\n")
                with pytest.raises(json.JSONDecodeError):
                    json.loads(got)
                seen["truncated"] += 1
                continue
            assert got.endswith("\n") and got.count("\n") == 1
            parsed = json.loads(got)
            assert parsed == json.loads(want)
            assert list(parsed) == [
                "event_id",
                "occurred_at",
                "sent_at",
                "received_at",
                "event_type",
                "user_id",
                "device_id",
                "account_ref",
                "context",
                "properties",
            ]
            seen["events"] += 1
            seen["renamed"] += parsed["event_type"] == "report.downloaded"
            seen["load_ms"] += "load_ms" in parsed["properties"]
            seen["pii"] += "@" in json.dumps(parsed["properties"])
    assert all(count > 0 for count in seen.values()), seen


def test_objects_are_written_while_the_day_is_rendered(rendered: Rendered) -> None:
    """Today's lines are compressed into their objects batch by batch, so a day's text is never all in memory:
    an object of the day is written before the day's last batch of lines is rendered."""
    days = 0
    for day in range(len(rendered.days)):
        batches = [i for i, step in enumerate(rendered.steps) if step == ("batch", day)]
        objects = [i for i, step in enumerate(rendered.steps) if step == ("object", day)]
        if len(batches) > 1:
            assert min(objects) < max(batches)
            days += 1
    assert days >= 2


def _objects(root: Path, main: pl.DataFrame, extra: pl.DataFrame, sizes: list[int]) -> dict[str, Any]:
    """Each object's lines, the lines the manifests count and the unreadable lines, written from ``main``'s
    lines given in batches of ``sizes``."""
    objects = collector.Objects(root, START, main.drop("line"), extra)
    at = 0
    for size in sizes:
        objects.add(main["line"].slice(at, size))
        at += size
    bad = objects.close([(0, hour, False) for hour in range(3)])
    text = {p.relative_to(root).as_posix(): gzip.decompress(p.read_bytes()) for p in root.rglob("*.gz")}
    counts = {
        (p.parent / o["name"]).relative_to(root).as_posix(): o["lines"]
        for p in root.rglob("manifest.json")
        for o in json.loads(p.read_text())["objects"]
        if o["lines"]
    }
    return {
        "lines": {name: body.decode().splitlines(keepends=True) for name, body in text.items()},
        "counts": counts,
        "bad": bad,
    }


def _lines(rng: np.random.Generator, n: int, name: str, flag: int) -> pl.DataFrame:
    """``n`` lines of day 0 in random objects of its first three hours, some ``flag``ged."""
    return pl.DataFrame(
        {
            "receive_day": np.zeros(n, dtype=np.int64),
            "hour": rng.integers(0, 3, n),
            "collector": rng.integers(0, 3, n),
            "sort_ms": rng.integers(0, 40, n),
            "seq": np.arange(n),
            "flag": np.where(rng.random(n) < 0.1, flag, collector.EVENT),
        }
    ).with_columns(line=pl.format(f"{name}{{}}:{{}}", "seq", "sort_ms") + "x" * 20 + "\n")


def test_objects_are_the_same_whatever_batches_their_lines_come_in(tmp_path: Path) -> None:
    """Each object holds its lines in order of receipt, an extra line (an earlier day's, a malformed one) before
    the object's own lines received at the same time and a truncated line last, however the lines are batched."""
    rng = np.random.default_rng(7)
    main = _lines(rng, 400, "main", collector.TRUNCATED)
    last = pl.col("seq") == pl.col("seq").max().over("hour", "collector")  # at most one truncated line an object
    main = main.with_columns(flag=pl.when(last).then("flag").otherwise(collector.EVENT))
    main = main.with_columns(
        sort_ms=pl.when(pl.col("flag") == collector.TRUNCATED).then(collector.LAST).otherwise("sort_ms")
    )
    main = main.sort("hour", "collector", "sort_ms", maintain_order=True)
    extra = _lines(rng, 90, "extra", collector.MALFORMED)
    merged = pl.concat([extra.with_columns(mine=pl.lit(1)), main.with_columns(mine=pl.lit(2))])
    want = {
        collector.object_path(Path(), START, 0, int(hour), int(c)).as_posix(): group["line"].to_list()
        for (hour, c), group in merged.sort("hour", "collector", "sort_ms", "mine", "seq").group_by(
            "hour", "collector", maintain_order=True
        )
    }
    sizes = rng.integers(0, 60, size=40)
    some = sizes[sizes.cumsum() < 400].tolist()
    batches = [[400], [1] * 400, [*some, 400 - sum(some)]]
    written = [_objects(tmp_path / str(i), main, extra, sizes) for i, sizes in enumerate(batches)]
    assert written[0]["lines"] == want
    assert written[0]["counts"] == {name: len(lines) for name, lines in want.items()}
    assert written[1] == written[0] and written[2] == written[0]
    for kind, code in (("truncated_object", collector.TRUNCATED), ("malformed_line", collector.MALFORMED)):
        logged = written[0]["bad"][kind]
        assert len(logged) == int((merged["flag"] == code).sum()) > 0
        for key in logged:
            name, line = key.rsplit(":", 1)
            assert written[0]["lines"][name][int(line) - 1].startswith(
                "main" if code == collector.TRUNCATED else "extra"
            )


def test_fixed_width_text_is_the_bytes_it_was_given() -> None:
    rng = np.random.default_rng(3)
    for n, width in ((0, 20), (5, 1), (300, 12), (300, 13), (1_000, 45), (7, 300)):
        mat = rng.integers(32, 127, size=(n, width), dtype=np.uint8)
        got = render.fixed(mat[:, ::-1])  # not contiguous
        assert got.dtype == pl.String
        assert got.to_list() == [bytes(row[::-1]).decode() for row in mat]


def test_text_reaches_polars_and_the_writer_without_pyarrow_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing ``pyarrow.compute`` costs 35 ms of CPU, once per process and inside the product step: the
    renderer's text and the writer's pieces (lines in views and copied in order) must not need it."""

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, *_: object) -> None:
            if name == "pyarrow.compute":
                raise ImportError("pyarrow.compute imported")

    monkeypatch.delitem(sys.modules, "pyarrow.compute", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Refuse(), *sys.meta_path])
    text = render.fixed(np.full((4, 30), ord("a"), dtype=np.uint8))
    for contiguous in (False, True):
        lines = render.Lines(pl.concat([text, pl.Series(["b" * 20])]), contiguous=contiguous)
        buffer, begin, end = lines.at(np.arange(5))
        text_of = [bytes(lines.data[b][lo:hi]) for b, lo, hi in zip(buffer, begin, end, strict=True)]
        assert b"".join(text_of) == b"a" * 120 + b"b" * 20


def test_a_template_is_its_literals_byte_fields_and_iso_timestamps() -> None:
    rng = np.random.default_rng(5)
    n = 20_000  # more than a block of records
    ms = rng.integers(1_700_000_000_000, 1_700_000_000_000 + 5 * 86_400_000, size=n)
    later = ms + rng.integers(0, 3 * 86_400_000, size=n)
    ids = render.hex_matrix(rng.integers(0, 256, size=(n, 4), dtype=np.uint8))
    got = render.template(['{"id":"', ids, '","a":"', ms, '","b":"', later, '"}'], n).to_list()
    want = [
        f'{{"id":"{bytes(i).decode()}","a":"{_iso(a)}","b":"{_iso(b)}"}}'
        for i, a, b in zip(ids, ms.tolist(), later.tolist(), strict=True)
    ]
    assert got == want
    assert render.template(["x", np.zeros(0, dtype=np.int64)], 0).to_list() == []


def test_decimals_are_zero_padded_digits() -> None:
    values = np.array([0, 7, 42, 999_999_999, 123_456_789, 10, 100_000_000])
    got = render.decimals(values, 9)
    assert got.shape == (len(values), 9)
    assert [bytes(row).decode() for row in got] == [f"{v:09d}" for v in values.tolist()]
    assert [bytes(row).decode() for row in render.decimals(np.array([5, 12]), 2)] == ["05", "12"]
    assert render.decimals(np.zeros(0, dtype=np.int64), 9).shape == (0, 9)
    for wrong in (np.array([-1]), np.array([1_000_000_000])):  # a sign or a tenth digit does not fit
        with pytest.raises(ValueError):
            render.decimals(wrong, 9)


def test_id_tables_are_each_value_formatted_as_text() -> None:
    """The user, device and account tables a line picks from: each row the text formatted one value at a time
    (ids wider than the padding as they are)."""
    users = pl.DataFrame({"user": [0, 41, 1_234_567_890]})
    ev = pl.DataFrame(
        {
            "traffic": [events.REAL, events.REAL, events.BOT, events.PROBE, events.SYNTHETIC, events.REAL],
            "user": [0, 2, -1, -1, -1, 1],
            "anonymous": [False, False, True, True, False, True],
            "device": [0, 1_234_567_890 * 4 + 2, -5, -1, -1, 41 * 4],
            "platform": [0, 2, 0, 0, 0, 0],
            "collector": [-1, -1, -1, 1, -1, -1],
            "account": [0, 1, -1, -1, 0, 1],
        }
    )
    table, pick = events._user_ids(ev, users, ",")
    assert table.gather(pick).to_list() == [
        '"003000000000",',
        '"0031234567890",',
        "null,",
        "null,",
        f'"{events.catalog.SYNTHETIC_USER}",',
        "null,",
    ]
    rng = np.random.default_rng(1)
    bot = render.hex_matrix(np.frombuffer(copy.deepcopy(rng).bytes(4), dtype=np.uint8).reshape(1, 4))
    table, pick = events._device_ids(rng, ev, users, ",")

    def device(contact: int, platform: int) -> str:
        digest = int(events.unit(0, np.array([contact * 4 + platform]), 12)[0] * 2**32)
        return f'"{"wia"[platform]}-{digest:08x}",'

    assert table.gather(pick).to_list() == [
        device(0, 0),
        device(1_234_567_890, 2),
        f'"b-{bytes(bot[0]).decode()}",',
        '"probe-c2",',
        '"s-monitor01",',
        device(41, 0),
    ]
    world = type("World", (), {"acc_crm_id": np.array(["001A", 'x"y'])})()
    table, pick = events._account_refs(ev, world, ",")
    assert table.gather(pick).to_list() == ['"001A",', '"x"y",', "null,", "null,", '"001A",', '"x"y",']


def test_sort_order_is_lexsort_of_the_keys_most_significant_first() -> None:
    rng = np.random.default_rng(11)
    n = 5_000
    day = rng.integers(-3, 4, size=n)  # negative and repeated values, ties between whole rows
    hour = rng.integers(0, 24, size=n)
    ms = rng.integers(1_700_000_000_000, 1_700_000_000_000 + 3_600_000, size=n)
    wide = rng.integers(0, 2**52, size=n)  # packs, but leaves no room for the row numbers
    # packed with the row numbers, packed alone, and too wide to pack
    for keys in ((day, hour, ms), (day, hour), (ms,), (hour, wide), (day, ms, ms, ms)):
        want = np.lexsort(keys[::-1])
        assert np.array_equal(events.sort_order(*keys), want)
    assert np.array_equal(events.sort_order(np.array([3])), [0])
    empty = np.zeros(0, dtype=np.int64)
    assert len(events.sort_order(empty, empty)) == 0


def test_sorted_rows_are_the_rows_in_lexsort_order() -> None:
    rng = np.random.default_rng(13)
    n = 5_000
    day = rng.integers(-3, 4, size=n)
    user = rng.integers(0, 50, size=n)
    ms = rng.integers(1_700_000_000_000, 1_700_000_000_000 + 3 * 86_400_000, size=n)
    wide = rng.integers(-(2**40), 2**40, size=n)
    for keys in ((day, user, ms), (ms,), (day, user), (day, wide, wide)):  # the last too wide to pack
        order = np.lexsort(keys[::-1])
        got = events.sorted_rows(*keys)
        assert len(got) == len(keys)
        for column, key in zip(got, keys, strict=True):
            assert np.array_equal(column, key[order])
    assert events.sorted_rows(np.zeros(0, dtype=np.int64))[0].shape == (0,)


def _huge_pages_advised() -> bool:
    assert memory._advise is not None
    advised = memory._advise(True)
    memory._advise(advised)
    return advised


def test_the_product_step_allocates_ordinary_pages_and_gives_the_setting_back(rendered: Rendered) -> None:
    assert rendered.advised_inside == [False] * 5  # every day's lines made without the advice
    assert rendered.advised_after


def test_overlapping_blocks_give_the_setting_back_once_the_last_ends() -> None:
    assert memory._advise is not None
    before = memory._advise(True)
    try:
        outer, inner = memory.ordinary_pages(), memory.ordinary_pages()
        outer.__enter__()
        inner.__enter__()
        outer.__exit__(None, None, None)  # the first to end: the other is still making its day
        assert not _huge_pages_advised()
        inner.__exit__(None, None, None)
        assert _huge_pages_advised()
    finally:
        memory._advise(before)

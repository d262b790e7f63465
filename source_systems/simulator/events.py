"""The product's event pipeline: what its collectors deliver, with the dirt of real ones, and what it means.

Clients batch events and send them every few seconds; the collector fleet (three instances behind a load
balancer) stamps each with ``received_at`` and writes what it received in each UTC hour as one
gzip-compressed NDJSON object per instance, under ``date=YYYY-MM-DD/hour=HH/``, and the hour's
``manifest.json`` once every instance's object of that hour is there (objects first, manifest last, each
written aside and renamed into place).

Dirt, each kind recorded in the dirt log (system ``product``, table ``events``):

* noise, on real events the pipeline must count correctly: ``duplicate_delivery`` (the same event_id
  again, one to twelve hours later), ``late_delivery`` (a mobile session sent when the device is back
  online, up to 72 hours later), ``clock_skew`` (a device clock off by minutes to days: ``occurred_at``
  and ``sent_at`` are the device's), ``out_of_order_hour`` (one instance's late-evening object delivered
  the next day, after later hours), ``property_added`` and ``event_renamed`` (schema evolution from a
  date), ``pii_in_property`` (an email address typed into a free-text property);
* bogus, lines that are no usage at all: ``bot_traffic`` (crawlers), ``health_check`` (load balancer
  probes and synthetic monitoring), ``malformed_line`` (broken JSON, a JSON array, an object without an
  event_id, a raw HTTP request line) and ``truncated_object`` (an object's last line cut off; its event
  is delivered again, complete, minutes to hours later).

The usage ledger records what the registry counts as usage, per event from its first complete copy: the
day of its corrected time (received_at minus (sent_at minus occurred_at)) and the day it was delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl

from source_systems.product import catalog, collector
from source_systems.product.collector import EVENT, LAST, MALFORMED, TRUNCATED, object_path
from source_systems.product.render import DAY_MS, decimals, fixed, hex_ids, hex_matrix, template
from source_systems.simulator.config import SimConfig
from source_systems.simulator.rng import stream
from source_systems.simulator.state import State, frame
from source_systems.simulator.usage import MAX_LATENCY_MS, Day, device_skew_ms, unit
from source_systems.simulator.world import World

HOUR_MS = 3_600_000
REAL, BOT, PROBE, SYNTHETIC = range(4)
OFFLINE_MEAN_MS = 10 * HOUR_MS
OFFLINE_CAP_MS = 71 * HOUR_MS  # received at most this long after the event happened
RUN_GAP_MS = 5 * 60_000  # the usage runs' widest gap: sessions are defined for gaps at least this long
_TIMES = ("occurred_ms", "sent_ms", "received_ms")  # a copy's times, as its line has them
RENDER_BATCH = 1 << 14  # lines rendered together: see _batches
Lookup = tuple[pl.Series, np.ndarray]  # a line's piece: a table of text and, per event, the row it picks


def sort_order(*keys: np.ndarray) -> np.ndarray:
    """The stable order of rows by integer ``keys``, the first the most significant: ``np.lexsort`` of the keys
    in reverse, as one sort of the keys packed into one integer (a sort per key costs several times as much).

    Where the row numbers fit below the keys too, every packed value is distinct and the order is NumPy's
    plain sort of them (vectorised: several times a stable sort's speed), read back from their low bits.
    Keys whose spans do not fit in 63 bits together are sorted by ``np.lexsort`` as they are.
    """
    if not keys or len(keys[0]) == 0:
        return np.lexsort(keys[::-1]) if keys else np.zeros(0, dtype=np.int64)
    lows = [int(k.min()) for k in keys]
    bits = [max(int(k.max()) - low, 0).bit_length() for k, low in zip(keys, lows, strict=True)]
    if sum(bits) > 63:
        return np.lexsort(keys[::-1])
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    for key, low, width in zip(keys, lows, bits, strict=True):
        packed <<= width
        packed |= np.asarray(key, dtype=np.int64) - low
    row_bits = (len(packed) - 1).bit_length()
    if sum(bits) + row_bits > 63:
        return np.argsort(packed, kind="stable")
    packed <<= row_bits
    packed |= np.arange(len(packed), dtype=np.int64)  # ties in order of rows
    packed.sort()
    return np.asarray(packed & ((1 << row_bits) - 1))


def sorted_rows(*keys: np.ndarray) -> list[np.ndarray]:
    """The rows of integer columns ``keys`` sorted by them, the first the most significant (rows equal in every
    key are alike, so their order is no matter): one plain sort of the columns packed into one integer, read
    back by their bits, where they fit in 63 bits together; otherwise picked in ``sort_order``."""
    if not keys or len(keys[0]) == 0:
        return [np.asarray(k, dtype=np.int64) for k in keys]
    lows = [int(k.min()) for k in keys]
    bits = [max(int(k.max()) - low, 0).bit_length() for k, low in zip(keys, lows, strict=True)]
    if sum(bits) > 63:
        order = sort_order(*keys)
        return [np.asarray(k, dtype=np.int64)[order] for k in keys]
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    for key, low, width in zip(keys, lows, bits, strict=True):
        packed <<= width
        packed |= np.asarray(key, dtype=np.int64) - low
    packed.sort()
    out = []
    for low, width in zip(lows[::-1], bits[::-1], strict=True):
        out.append((packed & ((1 << width) - 1)) + low)
        packed >>= width
    return out[::-1]


def _either(values: np.ndarray, a: int, b: int) -> np.ndarray:
    """Where ``values`` is ``a`` or ``b``: two comparisons, cheaper than ``np.isin`` over a day's events."""
    return (values == a) | (values == b)


def delayed_object(seed: int, rate: float, day: int) -> tuple[int, int] | None:
    """The (hour, collector) whose object of ``day`` is delivered the next day, if any.

    A pure function of the day, so that events generated on any day know when their object arrives.
    """
    rng = stream(seed, day, "product:delayed")
    if rng.random() >= rate:
        return None
    return int(rng.integers(18, 24)), int(rng.integers(0, len(catalog.COLLECTORS)))


def deliver(cfg: SimConfig, d: int, state: State, world: World, day: Day, root: Path) -> tuple[pl.DataFrame, int]:
    """Deliver day ``d``'s events: write what arrives today, keep the rest for the day it arrives.

    Also records the usage ledger; returns today's dirt log rows and the number of lines written today.
    """
    rng = stream(cfg.seed, d, "product:delivery")
    start_ms = (cfg.start - dt.date(1970, 1, 1)).days * DAY_MS
    ev = _events(cfg, rng, world, day, start_ms + d * DAY_MS)
    id_hex = hex_matrix(np.frombuffer(rng.bytes(16 * ev.height), dtype=np.uint8).reshape(ev.height, 16))
    copies = _copies(cfg, rng, ev, d, start_ms, day.users)
    _ledger(state, ev, day, copies, d, start_ms)
    properties, pii = _properties(cfg, rng, d, ev, world)
    dirt = _event_dirt(cfg, d, ev, copies, id_hex, pii)
    # rendered in the order they are written: today's objects first, each by time of receipt
    copies = copies.with_columns(
        seq=pl.int_range(0, copies.height, dtype=pl.Int64) + d * 2**32,
        sort_ms=pl.when(pl.col("flag") == TRUNCATED).then(pl.lit(LAST, dtype=pl.Int64)).otherwise("received_ms"),
    )
    # seq numbers the rows in order: a stable sort by the other keys keeps it
    keys = [copies[c].to_numpy() for c in ("day", "receive_day", "hour", "collector")]
    received = copies["received_ms"].to_numpy()
    # within an object (receive day, hour) every copy was received in the hour: its time in the hour, or after
    # it for a truncated copy (sort_ms LAST), orders it as sort_ms does
    in_hour = np.where(copies["flag"].to_numpy() == TRUNCATED, HOUR_MS, received % HOUR_MS)
    order = sort_order(*keys, in_hour)
    copies = copies.select(*state_schema()[:-1], "ev", *_TIMES)[order]
    batches = _render(cfg, rng, d, ev, copies, id_hex, properties, world, day.users)
    junk = _malformed(cfg, rng, d, ev.height, start_ms)
    today = int(np.searchsorted(copies["day"].to_numpy(), d, side="right"))
    extra = pl.concat([junk.filter(pl.col("day") == d), state.take_pending("pending_events", d)])
    # today's lines are compressed into their objects batch by batch as they are rendered; the rest are kept
    objects = collector.Objects(root, cfg.start, copies.head(today), extra)
    later = []
    for a, lines in batches:
        objects.add(lines.head(max(today - a, 0)))
        later.append(lines.slice(max(today - a, 0)))
    pending = (
        copies.slice(today)
        .select(state_schema()[:-1])
        .with_columns(line=pl.concat(later) if later else pl.Series([], dtype=pl.String))
    )
    state.append("pending_events", pl.concat([pending, junk.filter(pl.col("day") > d)]))
    bad = objects.close(_complete_hours(cfg, d))
    written = _dirt(d, [(pl.Series(keys, dtype=pl.String), "*", kind, "bogus") for kind, keys in bad.items()])
    return pl.concat([dirt, written]), today + extra.height


def state_schema() -> list[str]:
    return ["day", "receive_day", "hour", "collector", "sort_ms", "seq", "flag", "line"]


# ------------------------------------------------------------------ the events
def _events(cfg: SimConfig, rng: np.random.Generator, world: World, day: Day, day_ms: int) -> pl.DataFrame:
    """One row per event: the customers' own, then the traffic that is not usage.

    Crawlers (anonymous page views, half of them on a customer's pages), each instance's load balancer
    probe, and a synthetic monitoring journey (sign in, search) signed in as a monitoring user.
    """
    users = day.users
    n = len(day.etype)
    contact = users["user"].to_numpy()[day.user]
    account = users["account"].to_numpy()[day.user]
    server = day.platform == catalog.SERVER
    device = np.where(server, -1, contact * 4 + day.platform)
    web_agents = len(catalog.USER_AGENTS[catalog.WEB])
    agent = np.where(day.platform == catalog.WEB, rng.integers(0, web_agents, size=n), web_agents - 1 + day.platform)
    real = pl.DataFrame(
        {
            "traffic": np.full(n, REAL),
            "etype": day.etype,
            "true_ms": day.true_ms,
            "user": day.user,
            "account": account,
            "platform": day.platform,
            "session": day.session,
            "anonymous": day.anonymous,
            "device": device,
            "collector": np.full(n, -1),
            "agent": agent,
        }
    )
    n_bot = int(rng.binomial(max(n, 1), cfg.dirt.event_bot))
    bots = pl.DataFrame(
        {
            "traffic": np.full(n_bot, BOT),
            "etype": np.full(n_bot, catalog.PAGE_VIEWED),
            "true_ms": day_ms + rng.integers(0, DAY_MS, size=n_bot),
            "user": np.full(n_bot, -1),
            "account": np.where(rng.random(n_bot) < 0.5, rng.integers(0, world.n_accounts, size=n_bot), -1),
            "platform": np.full(n_bot, catalog.WEB),
            "session": np.full(n_bot, -1),
            "anonymous": np.ones(n_bot, bool),
            "device": -2 - rng.integers(0, 2**40, size=n_bot),  # a fresh device each time
            "collector": np.full(n_bot, -1),
            "agent": _AGENT_BOT + rng.integers(0, len(catalog.BOT_AGENTS), size=n_bot),
        }
    )
    every = catalog.PROBE_EVERY_MINUTES * 60_000
    per = DAY_MS // every
    probes = pl.DataFrame(
        {
            "traffic": np.full(3 * per, PROBE),
            "etype": np.full(3 * per, catalog.PAGE_VIEWED),
            "true_ms": day_ms + np.tile(np.arange(per) * every, 3) + 1_000,
            "user": np.full(3 * per, -1),
            "account": np.full(3 * per, -1),
            "platform": np.full(3 * per, catalog.WEB),
            "session": np.full(3 * per, -1),
            "anonymous": np.ones(3 * per, bool),
            "device": np.full(3 * per, -1),
            "collector": np.repeat(np.arange(3), per),
            "agent": _AGENT_PROBE + np.repeat(np.arange(3), per) % 2,
        }
    )
    every = catalog.SYNTHETIC_EVERY_MINUTES * 60_000
    runs = DAY_MS // every
    synthetic = pl.DataFrame(
        {
            "traffic": np.full(2 * runs, SYNTHETIC),
            "etype": np.tile([catalog.SIGNED_IN, catalog.SEARCH], runs),
            "true_ms": day_ms + np.repeat(np.arange(runs) * every, 2) + np.tile([30_000, 34_000], runs),
            "user": np.full(2 * runs, -1),
            "account": np.full(2 * runs, int(world.cust_top_account[0])),
            "platform": np.full(2 * runs, catalog.WEB),
            "session": np.full(2 * runs, -1),
            "anonymous": np.zeros(2 * runs, bool),
            "device": np.full(2 * runs, -1),
            "collector": np.full(2 * runs, -1),
            "agent": np.full(2 * runs, _AGENT_SYNTHETIC),
        }
    )
    events = pl.concat([real, bots, probes, synthetic], how="vertical_relaxed")
    return events.with_columns(contact=pl.Series(np.concatenate([contact, np.full(events.height - n, -1)])))


_AGENTS = np.array(
    [
        *catalog.USER_AGENTS[catalog.WEB],
        catalog.USER_AGENTS[catalog.IOS][0],
        catalog.USER_AGENTS[catalog.ANDROID][0],
        catalog.USER_AGENTS[catalog.SERVER][0],
        *catalog.BOT_AGENTS,
        *catalog.PROBE_AGENTS,
        catalog.SYNTHETIC_AGENT,
    ]
)
_AGENT_BOT = len(catalog.USER_AGENTS[catalog.WEB]) + 3
_AGENT_PROBE = _AGENT_BOT + len(catalog.BOT_AGENTS)
_AGENT_SYNTHETIC = _AGENT_PROBE + len(catalog.PROBE_AGENTS)


# ------------------------------------------------------------------ what the collectors receive
def _copies(
    cfg: SimConfig, rng: np.random.Generator, ev: pl.DataFrame, d: int, start_ms: int, users: pl.DataFrame
) -> pl.DataFrame:
    """Every delivered copy of every event: when it was sent and received, by which instance, when delivered."""
    n = ev.height
    true = ev["true_ms"].to_numpy()
    traffic = ev["traffic"].to_numpy()
    platform = ev["platform"].to_numpy()
    session = ev["session"].to_numpy()
    client = (traffic == REAL) & (platform != catalog.SERVER)
    sent = true + np.where(client, rng.integers(0, 10_000, size=n), rng.integers(0, 1_000, size=n))
    # a mobile session sent in one go when the device is back online
    n_sess = max(int(session.max()) + 1 if n else 0, 1)
    away = rng.random(n_sess) < cfg.dirt.event_offline
    gone = np.minimum(rng.exponential(OFFLINE_MEAN_MS, size=n_sess).astype(np.int64), OFFLINE_CAP_MS)
    last = np.zeros(n_sess, dtype=np.int64)
    in_sess = session >= 0
    np.maximum.at(last, session[in_sess], true[in_sess])
    mobile = client & _either(platform, catalog.IOS, catalog.ANDROID) & in_sess
    offline = np.zeros(n, bool)
    offline[mobile] = away[session[mobile]]
    # known within the late-arrival horizon: received by 18:00 on the third day after (the later hours of a
    # day may be known only the next day, see _place)
    horizon = np.minimum(true + OFFLINE_CAP_MS, true // DAY_MS * DAY_MS + 3 * DAY_MS + 18 * HOUR_MS) - MAX_LATENCY_MS
    back = np.minimum(last[np.maximum(session, 0)] + gone[np.maximum(session, 0)], horizon)
    sent = np.where(offline, np.maximum(back, sent), sent)
    received = sent + 20 + np.minimum(rng.exponential(150.0, size=n), MAX_LATENCY_MS - 100).astype(np.int64)
    device = ev["device"].to_numpy()
    # a device is a user's on a platform (device = contact * 4 + platform): its clock, per user and platform
    # once, rather than per event
    own = users["user"].to_numpy()[:, None] * 4 + np.arange(catalog.SERVER)
    clocks = device_skew_ms(cfg.seed, own, cfg.dirt.event_clock_skew)
    own_device = device >= 0
    skew = np.zeros(n, dtype=np.int64)
    skew[own_device] = clocks[ev["user"].to_numpy()[own_device], platform[own_device]]
    collector = ev["collector"].to_numpy()
    collector = np.where(collector >= 0, collector, rng.integers(0, 3, size=n))
    first = pl.DataFrame(
        {
            "ev": np.arange(n),
            "received_ms": received,
            "sent_ms": sent + skew,
            "collector": collector,
            "flag": np.full(n, EVENT),
            "kind": np.zeros(n, dtype=np.int64),
        }
    )
    first = _place(cfg, first, start_ms)
    truncated = _truncated(cfg, rng, first, d, traffic, received - true)
    dup = (rng.random(n) < cfg.dirt.event_duplicate) & (traffic == REAL) & ~truncated
    again = np.flatnonzero(truncated | dup)
    shift = np.where(
        truncated[again],
        rng.integers(5 * 60_000, 3 * HOUR_MS, size=len(again)),
        rng.integers(HOUR_MS, 12 * HOUR_MS, size=len(again)),
    )
    retries = pl.DataFrame(
        {
            "ev": again,
            "received_ms": received[again] + shift,
            "sent_ms": sent[again] + skew[again] + shift,
            "collector": rng.integers(0, 3, size=len(again)),
            "flag": np.full(len(again), EVENT),
            "kind": np.where(truncated[again], 2, 1),
        }
    )
    first = first.with_columns(flag=pl.Series(np.where(truncated, TRUNCATED, EVENT)))
    copies = pl.concat([first.drop("delayed"), _place(cfg, retries, start_ms).drop("delayed")])
    return copies.with_columns(
        occurred_ms=pl.Series(true + skew).gather(copies["ev"]),
        offline=pl.Series(offline).gather(copies["ev"]),
        skewed=pl.Series(skew != 0).gather(copies["ev"]),
    )


def _place(cfg: SimConfig, copies: pl.DataFrame, start_ms: int) -> pl.DataFrame:
    """Each copy's object (receive day, hour, instance), the day the object is written and the day its hour
    is known (its manifest is delivered).

    An hour's objects arrive minutes after it ends (hour 23's on the next day), a delayed one the next
    morning; the hour's manifest with its last object, and a reader reads an hour once it has a manifest.
    """
    received = copies["received_ms"].to_numpy()
    receive_day = (received - start_ms) // DAY_MS
    hour = received // HOUR_MS % 24
    collector = copies["collector"].to_numpy()
    # each receive day's delayed hour and instance (-1: none), picked per copy (days span a few at most)
    lo = int(receive_day.min()) if len(received) else 0
    span = int(receive_day.max()) - lo + 1 if len(received) else 0
    late_hour = np.full(span, -1, dtype=np.int64)
    late_collector = np.full(span, -1, dtype=np.int64)
    for i in range(span):
        late = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, lo + i)
        if late is not None:
            late_hour[i], late_collector[i] = late
    in_late_hour = hour == late_hour[receive_day - lo]
    delayed = in_late_hour & (collector == late_collector[receive_day - lo])
    waits = (hour == 23) | in_late_hour
    return copies.with_columns(
        receive_day=pl.Series(receive_day),
        hour=pl.Series(hour),
        day=pl.Series(receive_day + (delayed | (hour == 23))),
        known=pl.Series(receive_day + waits),
        delayed=pl.Series(delayed),
    )


def _truncated(
    cfg: SimConfig, rng: np.random.Generator, first: pl.DataFrame, d: int, traffic: np.ndarray, delay: np.ndarray
) -> np.ndarray:
    """Per object of today, maybe one event whose line is cut off at the object's end."""
    n = first.height
    eligible = (
        (first["receive_day"].to_numpy() == d) & ~first["delayed"].to_numpy() & (traffic == REAL) & (delay < HOUR_MS)
    )
    idx = np.flatnonzero(eligible)
    out = np.zeros(n, bool)
    if len(idx) == 0:
        return out
    key = first["hour"].to_numpy()[idx] * 3 + first["collector"].to_numpy()[idx]
    hit = rng.random(72) < cfg.dirt.event_truncated
    order = rng.permutation(len(idx))
    # each object's first event in that order (a minimum per key: no sort of the day's events)
    pos = np.full(72, len(idx), dtype=np.int64)
    np.minimum.at(pos, key[order], np.arange(len(idx)))
    keys = np.flatnonzero(pos < len(idx))
    chosen = idx[order[pos[keys]]][hit[keys]]
    out[chosen] = True
    return out


# ------------------------------------------------------------------ what counts (the usage ledger)
def _ledger(state: State, ev: pl.DataFrame, day: Day, copies: pl.DataFrame, d: int, start_ms: int) -> None:
    """Usage and seat changes as the registry counts them, by event day and the day they became known.

    An event counts from the first day any complete copy of it is known, on the day of its corrected time
    (the same in every copy: a copy sent again is sent and received later by the same amount).
    """
    complete = copies["flag"].to_numpy() == EVENT
    ev_of = copies["ev"].to_numpy()
    known_first = np.full(ev.height, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(known_first, ev_of[complete], copies["known"].to_numpy()[complete])
    once = complete & (copies["kind"].to_numpy() != 1)  # one complete copy of each event
    evi = ev_of[once]
    real = ev["traffic"].to_numpy()[evi] == REAL
    evi = evi[real]
    pick = np.flatnonzero(once)[real]
    received, sent = copies["received_ms"].to_numpy()[pick], copies["sent_ms"].to_numpy()[pick]
    event_day = (received - (sent - copies["occurred_ms"].to_numpy()[pick]) - start_ms) // DAY_MS
    delivered = known_first[evi]
    user = ev["user"].to_numpy()[evi]
    etype = ev["etype"].to_numpy()[evi]
    # a browser is stitched to its user from the day its first event carrying the user's id is delivered
    users = day.users
    stitched = users["stitched_known"].to_numpy().copy()
    anonymous = ev["anonymous"].to_numpy()[evi]
    signed = (ev["platform"].to_numpy()[evi] == catalog.WEB) & ~anonymous
    np.minimum.at(stitched, user[signed], delivered[signed])
    state.replace("product_users", users.with_columns(stitched_known=pl.Series(stitched)))
    known = np.where(anonymous, np.maximum(delivered, stitched[user]), delivered)
    seat = _either(etype, catalog.SEAT_ASSIGNED, catalog.SEAT_REVOKED)
    # one ledger row per (event day, known day, user, event type); days lie within a few of today
    key = (((event_day - d + 32) * 64 + (known - d + 32)) * 2**32 + user) * 16 + etype
    keys, counts = np.unique(key[~seat], return_counts=True)
    rows = keys // 16 % 2**32
    corrected = received - (sent - copies["occurred_ms"].to_numpy()[pick]) - start_ms
    _runs(state, event_day[~seat], known[~seat], users["user"].to_numpy()[user[~seat]], corrected[~seat])
    state.append(
        "usage",
        frame(
            "usage",
            day=keys // 16 // 2**32 // 64 - 32 + d,
            known_day=keys // 16 // 2**32 % 64 - 32 + d,
            user=users["user"].to_numpy()[rows],
            event_type=keys % 16,
            events=counts,
        ),
    )
    if seat.any():
        order = np.lexsort((user[seat], delivered[seat], event_day[seat]))
        state.append(
            "seats",
            frame(
                "seats",
                day=event_day[seat][order],
                known_day=delivered[seat][order],
                customer=users["customer"].to_numpy()[user[seat][order]],
                delta=np.where(etype[seat][order] == catalog.SEAT_ASSIGNED, 1, -1),
            ),
        )


def _runs(state: State, day: np.ndarray, known: np.ndarray, user: np.ndarray, ms: np.ndarray) -> None:
    """Usage events' corrected times as runs: a user's events of a day that became known the same day, in
    time order, cut where two follow more than RUN_GAP_MS apart.

    Sessions (registry: usage.session_gap_minutes) are then the runs known by a day merged wherever less than
    the session gap separates them (simulator/usage_truth.py), for any gap of at least RUN_GAP_MS, at a
    fraction of the events' rows.
    """
    if len(ms) == 0:
        return
    day, known, user, ms = sorted_rows(day, known, user, ms)
    same = (day[1:] == day[:-1]) & (known[1:] == known[:-1]) & (user[1:] == user[:-1])
    starts = np.flatnonzero(np.concatenate([[True], ~same | (ms[1:] - ms[:-1] > RUN_GAP_MS)]))
    ends = np.append(starts[1:], len(ms)) - 1
    state.append(
        "usage_runs",
        frame(
            "usage_runs",
            day=day[starts],
            known_day=known[starts],
            user=user[starts],
            first_ms=ms[starts] - day[starts] * DAY_MS,
            last_ms=ms[ends] - day[ends] * DAY_MS,
            events=ends - starts + 1,
        ),
    )


# ------------------------------------------------------------------ the lines
def _render(
    cfg: SimConfig,
    rng: np.random.Generator,
    d: int,
    ev: pl.DataFrame,
    copies: pl.DataFrame,
    id_hex: np.ndarray,
    properties: tuple[Lookup, Lookup],
    world: World,
    users: pl.DataFrame,
) -> Iterator[tuple[int, pl.Series]]:
    """One NDJSON line per copy (a truncated copy cut short), in batches (``_batches``); the day's random draws
    for them are made here, before any batch.

    A line is two kinds of piece: its fixed-width fields (the event id and the three timestamps, written
    first as one record per line) and lookups: every field that repeats (an event type, a user's id, a
    device's, an account's, a client's context, the halves of a properties object) is written once into a
    small table with the literal text that follows it, and picked per copy straight from that table, so a
    line is one record and seven picks joined in one pass.
    """
    date = cfg.start + dt.timedelta(days=d)
    names = catalog.EVENT_TYPES.copy()
    if date >= cfg.effective_rename_date:
        for code, name in catalog.RENAMED.items():
            names[code] = name
    lookups = [
        (pl.Series([f'{t}","user_id":' for t in names]), ev["etype"].to_numpy()),
        _who(
            ev,
            users,
            [
                _user_ids(ev, users, ',"device_id":'),
                _device_ids(rng, ev, users, ',"account_ref":'),
                _account_refs(ev, world, ',"context":'),
            ],
        ),
        _contexts(rng, ev, ',"properties":'),
        *properties,
    ]
    # picked by indexing with unsigned 32-bit rows: Series.gather builds an expression per call (about 70 us
    # each, 7 lookups per batch), and polars converts other integers to its row type first
    lookups = [(table, pick.astype(np.uint32)) for table, pick in lookups]
    truncated = np.flatnonzero(copies["flag"].to_numpy() == TRUNCATED)
    cuts = rng.uniform(0.3, 0.9, size=len(truncated))  # where each truncated line is cut, as a share of it
    return _batches(copies, id_hex, lookups, truncated, cuts)


def _batches(
    copies: pl.DataFrame, id_hex: np.ndarray, lookups: list[Lookup], truncated: np.ndarray, cuts: np.ndarray
) -> Iterator[tuple[int, pl.Series]]:
    """The lines of ``_render``, a batch at a time, each with its first row.

    A batch's intermediate columns are allocated once and reused (a day's would be fresh memory, paid for in
    page faults), and its lines are compressed before the next batch is rendered. A batch's lines (about 400
    bytes each) stay below polars' allocator's oversize threshold (jemalloc, 8 MiB by default), above which
    memory goes to an arena that gives it back to the kernel as soon as it is freed: memory below it is kept,
    and the next batches and days reuse it without faulting it in again.
    """
    ev_idx = copies["ev"].to_numpy()
    times = [copies[c].to_numpy() for c in _TIMES]
    for a in range(0, copies.height, RENDER_BATCH):
        b = min(copies.height, a + RENDER_BATCH)
        record = template(
            [
                '{"event_id":"',
                id_hex[ev_idx[a:b]],
                '","occurred_at":"',
                times[0][a:b],
                '","sent_at":"',
                times[1][a:b],
                '","received_at":"',
                times[2][a:b],
                '","event_type":"',
            ],
            b - a,
        )
        pieces = [table[pick[ev_idx[a:b]]] for table, pick in lookups]
        line = pl.select(pl.concat_str([record, *pieces])).to_series()
        lo, hi = np.searchsorted(truncated, [a, b])
        if hi > lo:  # a truncated copy is cut short
            idx = truncated[lo:hi] - a
            cut = (line.gather(idx).str.len_bytes().to_numpy() * cuts[lo:hi]).astype(np.int64)
            line = line.scatter(idx, line.gather(idx).str.slice(0, pl.Series(cut)))
        yield a, line


def _who(ev: pl.DataFrame, users: pl.DataFrame, parts: list[Lookup]) -> Lookup:
    """The user, device and account lookups joined into one, with a row per user, platform and sign-in state
    that occurs today (and one per event of the traffic that is no user's).

    Each of the three picks is a function of those (the device is the user's on the platform, the account the
    user's), so a line picks one piece from a table of a few rows per user instead of three from three tables
    spread over memory.
    """
    n = ev.height
    real = ev["traffic"].to_numpy() == REAL
    key = np.empty(n, dtype=np.int64)
    key[real] = (ev["user"].to_numpy() * 4 + ev["platform"].to_numpy())[real] * 2 + ev["anonymous"].to_numpy()[real]
    others = np.flatnonzero(~real)
    key[others] = users.height * 8 + np.arange(len(others))
    used = np.zeros(users.height * 8 + len(others), dtype=bool)
    used[key] = True
    row = np.cumsum(used) - 1
    some = np.empty(len(used), dtype=np.int64)  # an event of each row (any: they all pick the same)
    some[key] = np.arange(n)
    first = some[used]
    table = pl.select(pl.concat_str([part.gather(pick[first]) for part, pick in parts])).to_series()
    return table, row[key]


def _quoted(values: np.ndarray) -> np.ndarray:
    return np.char.add(np.char.add('"', values.astype(str)), '"')


def _user_ids(ev: pl.DataFrame, users: pl.DataFrame, then: str) -> Lookup:
    """'"003…"' for a signed-in user, the monitoring user's id, or null; each followed by ``then``."""
    contact = users["user"].to_numpy()
    if len(contact) == 0 or (int(contact.min()) >= 0 and int(contact.max()) < 10**9):  # nine digits, padded
        ids = template(['"003', decimals(contact, 9), f'"{then}'], len(contact))
    else:  # a wider id as it is
        ids = pl.Series([f'"003{c:09d}"{then}' for c in contact.tolist()], dtype=pl.String)
    table = pl.concat([pl.Series([f"null{then}", f'"{catalog.SYNTHETIC_USER}"{then}']), ids])
    traffic = ev["traffic"].to_numpy()
    pick = np.where((traffic == REAL) & ~ev["anonymous"].to_numpy(), ev["user"].to_numpy() + 2, 0)
    pick[traffic == SYNTHETIC] = 1
    return table, pick


def _device_ids(rng: np.random.Generator, ev: pl.DataFrame, users: pl.DataFrame, then: str) -> Lookup:
    """'"w-…"', '"i-…"', '"a-…"' per user and platform, a crawler's fresh '"b-…"', a probe's, or null."""
    traffic = ev["traffic"].to_numpy()
    device = ev["device"].to_numpy()
    n_users = users.height
    own = (np.arange(n_users * 3) // 3) * 4 + np.arange(n_users * 3) % 3  # row * 4 + platform
    contact_dev = users["user"].to_numpy()[own // 4] * 4 + own % 4
    digest = (unit(0, contact_dev, 12) * 2**32).astype(">u4")
    hexed = hex_matrix(np.frombuffer(digest.tobytes(), dtype=np.uint8).reshape(-1, 4))
    prefix = np.frombuffer(b"w-i-a-", dtype=np.uint8).reshape(3, 2)[own % 4]
    real = template(['"', prefix, hexed, f'"{then}'], len(own))
    bots = np.flatnonzero(traffic == BOT)
    bot_hex = hex_matrix(np.frombuffer(rng.bytes(4 * len(bots)), dtype=np.uint8).reshape(len(bots), 4))
    fixed_ids = ["null", '"s-monitor01"', *(f'"probe-{c}"' for c in catalog.COLLECTORS)]
    bot_ids = template(['"b-', bot_hex, f'"{then}'], len(bots))
    table = pl.concat([pl.Series([f"{f}{then}" for f in fixed_ids], dtype=pl.String), real, bot_ids])
    pick = np.zeros(len(traffic), dtype=np.int64)
    rows = ev["user"].to_numpy()
    client = (traffic == REAL) & (device >= 0)
    pick[client] = len(fixed_ids) + rows[client] * 3 + ev["platform"].to_numpy()[client]
    pick[traffic == SYNTHETIC] = 1
    probes = traffic == PROBE
    pick[probes] = 2 + ev["collector"].to_numpy()[probes]
    pick[bots] = len(fixed_ids) + len(own) + np.arange(len(bots))
    return table, pick


def _account_refs(ev: pl.DataFrame, world: World, then: str) -> Lookup:
    refs = pl.select(pl.concat_str([pl.lit('"'), pl.Series(world.acc_crm_id, dtype=pl.String), pl.lit(f'"{then}')]))
    table = pl.concat([pl.Series([f"null{then}"]), refs.to_series()])
    return table, ev["account"].to_numpy() + 1


def _contexts(rng: np.random.Generator, ev: pl.DataFrame, then: str) -> Lookup:
    """The client: platform, app version (of a customer's client only) and user agent."""
    n = ev.height
    traffic = ev["traffic"].to_numpy()
    platform = ev["platform"].to_numpy()
    agent = ev["agent"].to_numpy()
    client = (traffic == REAL) & (platform != catalog.SERVER)
    versions = ["null", *_quoted(catalog.APP_VERSIONS)]
    version = np.where(client, 1 + rng.integers(0, len(catalog.APP_VERSIONS), size=n), 0)
    table = pl.Series(
        [
            f'{{"platform":"{p}","app_version":{v},"user_agent":"{a}"}}{then}'
            for p in catalog.PLATFORMS
            for v in versions
            for a in _AGENTS
        ]
    )
    return table, (platform * len(versions) + version) * len(_AGENTS) + agent


def _properties(
    cfg: SimConfig, rng: np.random.Generator, d: int, ev: pl.DataFrame, world: World
) -> tuple[tuple[Lookup, Lookup], np.ndarray]:
    """Each event type's own properties, as two lookups (the line's last pieces); an email typed into a
    free-text one now and then.

    Every properties object the product writes is the head of one table and the tail of another (tables
    made once), so rendering is two lookups per event; typed addresses are added to the table per day.
    """
    heads, at = _property_heads()
    n = ev.height
    etype = ev["etype"].to_numpy()
    traffic = ev["traffic"].to_numpy()
    pii = (traffic == REAL) & _either(etype, catalog.SEARCH, COMMENT) & (rng.random(n) < cfg.dirt.event_pii)
    p1 = rng.integers(0, 1_000, size=n)
    p2 = rng.integers(40, 3_000, size=n)
    pick = rng.integers(0, 1 << 30, size=n)
    head = np.zeros(n, dtype=np.int64)
    tail = np.zeros(n, dtype=np.int64)  # "" unless said otherwise
    load_ms = (cfg.start + dt.timedelta(days=d)) >= cfg.effective_property_date
    client_tail = np.where(traffic == REAL, 2 + p2, 1) if load_ms else np.ones(n, dtype=np.int64)
    choice = {code: etype == code for code in range(len(catalog.EVENT_TYPES))}
    page = choice[catalog.PAGE_VIEWED]
    sections = len(catalog.SECTIONS)
    head[page] = at["page"] + pick[page] % sections * 1_000 + p1[page]
    head[page & ev["anonymous"].to_numpy() & (traffic == REAL)] = at["login"]
    head[page & (traffic == PROBE)] = at["healthz"]
    crawled = page & (traffic == BOT)
    head[crawled] = at["section"] + pick[crawled] % sections
    tail[page] = client_tail[page]
    # each type's head from its own draws: picked on that type's events only
    for code, key, index in (
        (catalog.SEARCH, "search", lambda q, r: q % len(catalog.SEARCHES) * 200 + r % 200),
        (catalog.SIGNED_IN, "signed_in", lambda q, r: q % len(catalog.SIGN_IN_METHODS)),
        (3, "report_created", lambda q, r: r * len(catalog.TEMPLATES) + q % len(catalog.TEMPLATES)),
        (4, "report_viewed", lambda q, r: r),
        (5, "dashboard_viewed", lambda q, r: r % 400),
        (6, "dashboard_shared", lambda q, r: r % 400 * len(catalog.CHANNELS) + q % len(catalog.CHANNELS)),
        (7, "workflow", lambda q, r: r % 500),
        (8, "integration", lambda q, r: q % len(catalog.CONNECTORS)),
        (COMMENT, "comment", lambda q, r: q % len(catalog.COMMENTS)),
        (catalog.EXPORTED, "exported", lambda q, r: r * len(catalog.FORMATS) + q % len(catalog.FORMATS)),
        (catalog.SEAT_ASSIGNED, "seat", lambda q, r: 0 * q),
        (catalog.SEAT_REVOKED, "seat", lambda q, r: 0 * q),
    ):
        rows = np.flatnonzero(choice[code])
        head[rows] = at[key] + index(pick[rows], p1[rows])
    tail[choice[7]] = 2 + 2 * 3_000 + p2[choice[7]]
    tail[choice[8]] = 2 + 3_000 + p2[choice[8]]
    typed = np.flatnonzero(pii)  # who typed which address
    people = np.char.add(
        np.char.add(PII_FIRST[rng.integers(0, len(PII_FIRST), size=len(typed))], "."),
        PII_LAST[rng.integers(0, len(PII_LAST), size=len(typed))],
    )
    emails = np.char.add(np.char.add(people, "@"), world.acc_domain[np.maximum(ev["account"].to_numpy(), 0)[typed]])
    in_search = etype[typed] == catalog.SEARCH
    typed_heads = np.where(
        in_search,
        np.char.add(np.char.add('{"query":"', emails), np.char.add('","results":', (p1[typed] % 200).astype(str))),
        np.char.add(np.char.add('{"text":"please send this to ', emails), '"'),
    )
    head[typed] = heads.len() + np.arange(len(typed))
    tail[typed] = 1
    table = pl.concat([heads, pl.Series(typed_heads.astype(str), dtype=pl.String)])
    return ((table, head), (_property_tails(), tail)), pii


@cache
def _property_heads() -> tuple[pl.Series, dict[str, int]]:
    """The beginnings of every properties object, by kind, and where each kind starts in the table."""
    kinds: dict[str, list[str]] = {
        "page": [f'{{"path":"/{s}/{p}"' for s in catalog.SECTIONS for p in range(1_000)],
        "login": ['{"path":"/login"'],
        "healthz": ['{"path":"/healthz"'],
        "section": [f'{{"path":"/{s}"' for s in catalog.SECTIONS],
        "search": [f'{{"query":"{q}","results":{r}}}' for q in catalog.SEARCHES for r in range(200)],
        "signed_in": [f'{{"method":"{m}"}}' for m in catalog.SIGN_IN_METHODS],
        "report_created": [
            f'{{"report_id":"r-{p}","template":"{t}"}}' for p in range(1_000) for t in catalog.TEMPLATES
        ],
        "report_viewed": [f'{{"report_id":"r-{p}"}}' for p in range(1_000)],
        "dashboard_viewed": [f'{{"dashboard_id":"db-{p}"}}' for p in range(400)],
        "dashboard_shared": [
            f'{{"dashboard_id":"db-{p}","channel":"{c}"}}' for p in range(400) for c in catalog.CHANNELS
        ],
        "workflow": [f'{{"workflow_id":"wf-{p}","duration_ms":' for p in range(500)],
        "integration": [f'{{"connector":"{c}","records":' for c in catalog.CONNECTORS],
        "comment": [f'{{"text":"{t}"}}' for t in catalog.COMMENTS],
        "exported": [f'{{"report_id":"r-{p}","format":"{f}"}}' for p in range(1_000) for f in catalog.FORMATS],
        "seat": ['{"seat_type":"full"}'],
    }
    at: dict[str, int] = {}
    table: list[str] = []
    for kind, heads in kinds.items():
        at[kind] = len(table)
        table += heads
    return pl.Series(table, dtype=pl.String), at


@cache
def _property_tails() -> pl.Series:
    """'', '}', then ',"load_ms":N}', 'N}' and 'N,"status":"ok"}' for N below 3,000; each closing the line."""
    numbers = [str(v) for v in range(3_000)]
    tails = ["", "}", *(f',"load_ms":{v}}}' for v in numbers), *(f"{v}}}" for v in numbers)]
    tails += [f'{v},"status":"ok"}}' for v in numbers]
    return pl.Series([f"{t}}}\n" for t in tails], dtype=pl.String)


COMMENT = 9
PII_FIRST = np.array(["anna", "james", "maria", "lukas", "sophie", "oliver", "emma", "noah", "lea", "tom"])
PII_LAST = np.array(["smith", "weber", "martin", "jansen", "murphy", "garcia", "fischer", "walsh", "brown", "moreau"])


_JUNK = (
    '{"event_id":"{id}","event_type":"page.viewed",,"properties":{}}',  # broken JSON
    '["page.viewed","{id}"]',  # not an object
    '{"event_type":"page.viewed","properties":{"path":"/home"}}',  # no event_id
    "POST /v1/batch HTTP/1.1",  # a request line where a body should be
)


def _malformed(cfg: SimConfig, rng: np.random.Generator, d: int, n_real: int, start_ms: int) -> pl.DataFrame:
    k = int(rng.binomial(max(n_real, 1), cfg.dirt.event_malformed))
    received = start_ms + d * DAY_MS + np.sort(rng.integers(0, DAY_MS, size=k))
    kind = rng.integers(0, len(_JUNK), size=k)
    ids = hex_ids(np.frombuffer(rng.bytes(16 * k), dtype=np.uint8).reshape(k, 16)).to_list()
    lines = [_JUNK[j].replace("{id}", i) + "\n" for j, i in zip(kind.tolist(), ids, strict=True)]
    placed = _place(
        cfg,
        pl.DataFrame({"received_ms": received, "collector": rng.integers(0, 3, size=k)}, schema_overrides={}),
        start_ms,
    )
    return placed.select(
        "day",
        "receive_day",
        "hour",
        "collector",
        sort_ms=pl.col("received_ms"),
        seq=pl.int_range(0, k, dtype=pl.Int64) + d * 2**32 + 2**31,
        flag=pl.lit(MALFORMED, dtype=pl.Int64),
        line=pl.Series(lines, dtype=pl.String),
    )


# ------------------------------------------------------------------ the dirt log
Logged = tuple[pl.Series, str, str, str]  # dirt log rows: their keys, and the column, kind and class of them all


def _dirt(d: int, groups: list[Logged]) -> pl.DataFrame:
    """The dirt log's rows of groups of keys: one frame, each group's text picked from a row per group (a
    frame of repeated text per group costs more than its rows)."""
    counts = [keys.len() for keys, *_ in groups]
    group = pl.Series(np.repeat(np.arange(len(groups)), counts), dtype=pl.Int64)
    k = sum(counts)

    def text(i: int) -> pl.Series:
        return pl.Series([g[i] for g in groups], dtype=pl.String).gather(group)

    keys = pl.concat([keys.cast(pl.String) for keys, *_ in groups]) if groups else pl.Series([], dtype=pl.String)
    return frame(
        "dirt",
        day=np.full(k, d),
        system=pl.repeat("product", k, eager=True),
        table=pl.repeat("events", k, eager=True),
        key=keys,
        column=text(1),
        kind=text(2),
        **{"class": text(3)},
    )


def _event_dirt(
    cfg: SimConfig, d: int, ev: pl.DataFrame, copies: pl.DataFrame, id_hex: np.ndarray, pii: np.ndarray
) -> pl.DataFrame:
    traffic = ev["traffic"].to_numpy()
    first = copies.head(ev.height)  # every event's first copy, in the order of events (_copies)
    logged = [
        (np.flatnonzero(traffic == BOT), "*", "bot_traffic", "bogus"),
        (np.flatnonzero(_either(traffic, PROBE, SYNTHETIC)), "*", "health_check", "bogus"),
        (copies["ev"].to_numpy()[copies["kind"].to_numpy() == 1], "*", "duplicate_delivery", "noise"),
        (np.flatnonzero(first["offline"].to_numpy()), "received_at", "late_delivery", "noise"),
        (np.flatnonzero(first["skewed"].to_numpy()), "occurred_at", "clock_skew", "noise"),
        (np.flatnonzero(pii), "properties", "pii_in_property", "noise"),
    ]
    # the event ids as text only for the few events logged, all at once
    ids = fixed(id_hex[np.concatenate([rows for rows, *_ in logged])])
    at = np.cumsum([0, *(len(rows) for rows, *_ in logged)]).tolist()
    groups: list[Logged] = [
        (ids[at[i] : at[i + 1]], column, kind, klass) for i, (_, column, kind, klass) in enumerate(logged)
    ]
    date = cfg.start + dt.timedelta(days=d)
    late = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, d)
    if late is not None:
        path = object_path(Path(), cfg.start, d, late[0], late[1]).as_posix()
        groups.append((pl.Series([path]), "*", "out_of_order_hour", "noise"))
    if date == cfg.effective_property_date:
        groups.append((pl.Series(["*"]), "properties.load_ms", "property_added", "noise"))
    if date == cfg.effective_rename_date:
        for code, name in catalog.RENAMED.items():
            renamed = f"event_type:{catalog.EVENT_TYPES[code]}->{name}"
            groups.append((pl.Series(["*"]), renamed, "event_renamed", "noise"))
    return _dirt(d, groups)


# ------------------------------------------------------------------ the objects and manifests
def _complete_hours(cfg: SimConfig, d: int) -> list[tuple[int, int, bool]]:
    """Hours whose last object arrives today, and whether it was delayed: yesterday's last hour and delayed
    one, then today's hours but the last (and a delayed one)."""
    today = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, d)
    yesterday = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, d - 1) if d > 0 else None
    hours = []
    if d > 0:
        hours = sorted(
            {(d - 1, 23, yesterday is not None and yesterday[0] == 23)}
            | ({(d - 1, yesterday[0], True)} if yesterday else set())
        )
    return hours + [(d, h, False) for h in range(23) if today is None or h != today[0]]

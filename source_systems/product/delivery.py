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
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from isal import isal_zlib

from source_systems.product import catalog
from source_systems.product.behaviour import Day, device_skew_ms, unit
from source_systems.product.render import DAY_MS, hex_ids, iso_ms, line_bytes
from source_systems.simulator.config import SimConfig
from source_systems.simulator.rng import stream
from source_systems.simulator.state import State, frame
from source_systems.simulator.world import World

HOUR_MS = 3_600_000
REAL, BOT, PROBE, SYNTHETIC = range(4)
EVENT, TRUNCATED, MALFORMED = range(3)
OFFLINE_MEAN_MS = 10 * HOUR_MS
OFFLINE_CAP_MS = 71 * HOUR_MS  # received at most this long after the event happened
LAST = 2**62  # sorts a truncated line last in its object
DIRT_COLUMNS = ("day", "system", "table", "key", "column", "kind", "class")


@dataclass
class Events:
    """One row per event (not per delivered copy): who, what, when, and how it is written."""

    traffic: np.ndarray
    etype: np.ndarray
    true_ms: np.ndarray
    user: np.ndarray  # users-table row, -1 for none
    account: np.ndarray  # CRM account index, -1 for none
    platform: np.ndarray
    session: np.ndarray
    anonymous: np.ndarray
    device: np.ndarray  # device number, -1 for server-side events
    agent: pl.Series  # user agent
    user_id: pl.Series
    device_id: pl.Series
    offline: np.ndarray


def delayed_object(seed: int, rate: float, day: int) -> tuple[int, int] | None:
    """The (hour, collector) whose object of ``day`` is delivered the next day, if any.

    A pure function of the day, so that events generated on any day know when their object arrives.
    """
    rng = stream(seed, day, "product:delayed")
    if rng.random() >= rate:
        return None
    return int(rng.integers(18, 24)), int(rng.integers(0, len(catalog.COLLECTORS)))


def object_path(root: Path, start: dt.date, receive_day: int, hour: int, collector: int) -> Path:
    date = (start + dt.timedelta(days=receive_day)).isoformat()
    return root / f"date={date}" / f"hour={hour:02d}" / f"events-{catalog.COLLECTORS[collector]}.ndjson.gz"


def deliver(cfg: SimConfig, d: int, state: State, world: World, day: Day, root: Path) -> tuple[pl.DataFrame, int]:
    """Deliver day ``d``'s events: write what arrives today, keep the rest for the day it arrives.

    Also records the usage ledger; returns today's dirt log rows and the number of lines written today.
    """
    rng = stream(cfg.seed, d, "product:delivery")
    start_ms = (cfg.start - dt.date(1970, 1, 1)).days * DAY_MS
    ev = _events(cfg, rng, world, day, start_ms + d * DAY_MS)
    ids = hex_ids(np.frombuffer(rng.bytes(16 * ev.height), dtype=np.uint8).reshape(ev.height, 16))
    copies = _copies(cfg, rng, ev, d, start_ms)
    _ledger(state, ev, day, copies, start_ms)
    properties, pii = _properties(cfg, rng, d, ev, world)
    lines = pl.concat(
        [_render(cfg, rng, d, ev, copies, ids, properties, world), _malformed(cfg, rng, d, ev.height, start_ms)],
        how="vertical_relaxed",
    ).select(state_schema())
    state.append("pending_events", lines.filter(pl.col("day") > d))
    due = pl.concat([lines.filter(pl.col("day") == d), state.take_pending("pending_events", d)])
    return pl.concat([_event_dirt(cfg, d, ev, copies, ids, pii), _write(cfg, d, root, due)]), due.height


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
def _copies(cfg: SimConfig, rng: np.random.Generator, ev: pl.DataFrame, d: int, start_ms: int) -> pl.DataFrame:
    """Every delivered copy of every event: when it was sent and received, by which instance, when delivered."""
    n = ev.height
    true = ev["true_ms"].to_numpy()
    traffic = ev["traffic"].to_numpy()
    platform = ev["platform"].to_numpy()
    session = ev["session"].to_numpy()
    client = (traffic == REAL) & (platform != catalog.SERVER)
    sent = true + np.where(client, rng.integers(0, 10_000, size=n), rng.integers(0, 1_000, size=n))
    # a mobile session sent in one go when the device is back online
    n_sess = int(session.max()) + 1 if n and session.max() >= 0 else 0
    away = rng.random(n_sess) < cfg.dirt.event_offline
    gone = np.minimum(rng.exponential(OFFLINE_MEAN_MS, size=n_sess).astype(np.int64), OFFLINE_CAP_MS)
    last = np.zeros(n_sess, dtype=np.int64)
    in_sess = session >= 0
    np.maximum.at(last, session[in_sess], true[in_sess])
    mobile = client & np.isin(platform, [catalog.IOS, catalog.ANDROID]) & in_sess
    offline = np.zeros(n, bool)
    offline[mobile] = away[session[mobile]]
    back = np.minimum(last[np.maximum(session, 0)] + gone[np.maximum(session, 0)], true + OFFLINE_CAP_MS - 5_000)
    sent = np.where(offline, np.maximum(back, sent), sent)
    received = sent + 20 + np.minimum(rng.exponential(150.0, size=n), 3_000).astype(np.int64)
    device = ev["device"].to_numpy()
    skew = np.where(device >= 0, device_skew_ms(cfg.seed, device, cfg.dirt.event_clock_skew), 0)
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
    # a late session's copies never wait for a delayed object (they would pass the 72-hour horizon)
    late_in_delayed = offline & first["delayed"].to_numpy()
    if late_in_delayed.any():
        first = _place(
            cfg,
            first.with_columns(collector=pl.Series(np.where(late_in_delayed, (collector + 1) % 3, collector))),
            start_ms,
        )
    truncated = _truncated(cfg, rng, first, d, traffic, received - true)
    dup = (rng.random(n) < cfg.dirt.event_duplicate) & (traffic == REAL) & ~truncated & ~first["delayed"].to_numpy()
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
    """Each copy's object (receive day, hour, instance) and the day that object is delivered."""
    received = copies["received_ms"].to_numpy()
    receive_day = (received - start_ms) // DAY_MS
    hour = received // HOUR_MS % 24
    collector = copies["collector"].to_numpy()
    delayed = np.zeros(len(received), bool)
    for r in np.unique(receive_day).tolist():
        late = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, r)
        if late is not None:
            delayed |= (receive_day == r) & (hour == late[0]) & (collector == late[1])
    return copies.with_columns(
        receive_day=pl.Series(receive_day),
        hour=pl.Series(hour),
        day=pl.Series(receive_day + delayed),
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
    keys, pos = np.unique(key[order], return_index=True)
    chosen = idx[order[pos]][hit[keys]]
    out[chosen] = True
    return out


# ------------------------------------------------------------------ what counts (the usage ledger)
def _ledger(state: State, ev: pl.DataFrame, day: Day, copies: pl.DataFrame, start_ms: int) -> None:
    """Usage and seat changes as the registry counts them, by event day and the day they became known."""
    complete = copies.filter((pl.col("flag") == EVENT) & (pl.col("kind") != 1))  # first complete copy
    complete = complete.join(
        ev.with_row_index("ev").select(pl.col("ev").cast(pl.Int64), "traffic", "etype", "user", "anonymous"), on="ev"
    )
    complete = complete.filter(pl.col("traffic") == REAL).with_columns(
        event_day=((pl.col("received_ms") - (pl.col("sent_ms") - pl.col("occurred_ms")) - start_ms) // DAY_MS)
    )
    users = day.users
    # a browser is stitched to its user from the day that user's first sign-in on it is delivered
    signins = complete.filter(pl.col("etype") == catalog.SIGNED_IN).group_by("user").agg(pl.col("day").min())
    stitched = users["stitched_known"].to_numpy().copy()
    if signins.height:
        rows = signins["user"].to_numpy()
        stitched[rows] = np.minimum(stitched[rows], signins["day"].to_numpy())
    state.replace("product_users", users.with_columns(stitched_known=pl.Series(stitched)))
    contact = users["user"]
    user = complete["user"].to_numpy()
    delivered = complete["day"].to_numpy()
    known = np.where(complete["anonymous"].to_numpy(), np.maximum(delivered, stitched[user]), delivered)
    seat = pl.col("etype").is_in([catalog.SEAT_ASSIGNED, catalog.SEAT_REVOKED])
    usage = (
        complete.with_columns(known_day=pl.Series(known))
        .filter(~seat)
        .group_by("event_day", "known_day", "user", "etype")
        .agg(events=pl.len())
        .sort("event_day", "known_day", "user", "etype")
    )
    state.append(
        "usage",
        frame(
            "usage",
            day=usage["event_day"],
            known_day=usage["known_day"],
            user=contact.gather(usage["user"]),
            event_type=usage["etype"],
            events=usage["events"],
        ),
    )
    seats = complete.filter(seat).sort("event_day", "day", "user")
    if seats.height:
        state.append(
            "seats",
            frame(
                "seats",
                day=seats["event_day"],
                known_day=seats["day"],
                customer=users["customer"].gather(seats["user"]),
                delta=np.where(seats["etype"].to_numpy() == catalog.SEAT_ASSIGNED, 1, -1),
            ),
        )


# ------------------------------------------------------------------ the lines
def _render(
    cfg: SimConfig,
    rng: np.random.Generator,
    d: int,
    ev: pl.DataFrame,
    copies: pl.DataFrame,
    ids: pl.Series,
    properties: pl.Series,
    world: World,
) -> pl.DataFrame:
    """One NDJSON line per copy (a truncated copy cut short), plus malformed lines from a broken client."""
    date = cfg.start + dt.timedelta(days=d)
    names = catalog.EVENT_TYPES.copy()
    if date >= cfg.effective_rename_date:
        for code, name in catalog.RENAMED.items():
            names[code] = name
    per_event = ev.select(
        event_id=ids,
        head=pl.concat_str(
            [
                pl.lit('{"event_id":"'),
                ids,
                pl.lit('","event_type":"'),
                pl.Series(names).gather(ev["etype"]),
                pl.lit('","user_id":'),
                _json_string(_user_ids(ev)),
                pl.lit(',"device_id":'),
                _json_string(_device_ids(ev)),
                pl.lit(',"account_ref":'),
                _json_string(_account_refs(ev, world)),
                pl.lit(',"context":'),
                _context(rng, ev),
                pl.lit(',"properties":'),
                properties,
            ]
        ),
    )
    n = copies.height
    ev_idx = copies["ev"]
    line = pl.select(
        pl.concat_str(
            [
                per_event["head"].gather(ev_idx),
                pl.lit(',"occurred_at":"'),
                iso_ms(copies["occurred_ms"].to_numpy()),
                pl.lit('","sent_at":"'),
                iso_ms(copies["sent_ms"].to_numpy()),
                pl.lit('","received_at":"'),
                iso_ms(copies["received_ms"].to_numpy()),
                pl.lit('"}\n'),
            ]
        )
    ).to_series()
    flag = copies["flag"].to_numpy()
    truncated = flag == TRUNCATED
    if truncated.any():
        cut = (line.str.len_bytes().to_numpy() * rng.uniform(0.3, 0.9, size=n)).astype(np.int64)
        idx = np.flatnonzero(truncated)
        line = line.scatter(idx, line.gather(idx).str.slice(0, pl.Series(cut[idx])))
    out = copies.select("day", "receive_day", "hour", "collector").with_columns(
        sort_ms=pl.Series(np.where(truncated, LAST, copies["received_ms"].to_numpy())),
        seq=pl.Series(np.arange(n, dtype=np.int64) + d * 2**32),
        flag=pl.Series(flag.astype(np.int64)),
        line=line,
    )
    return out


def _json_string(values: pl.Series) -> pl.Expr:
    return pl.when(values.is_null()).then(pl.lit("null")).otherwise(pl.concat_str([pl.lit('"'), values, pl.lit('"')]))


def _user_ids(ev: pl.DataFrame) -> pl.Series:
    contact = ev["contact"]
    traffic = ev["traffic"]
    ids = pl.select(
        pl.when((traffic == REAL) & ~ev["anonymous"])
        .then(pl.concat_str([pl.lit("003"), contact.cast(pl.String).str.zfill(9)]))
        .when(traffic == SYNTHETIC)
        .then(pl.lit(catalog.SYNTHETIC_USER))
    ).to_series()
    return ids


def _device_ids(ev: pl.DataFrame) -> pl.Series:
    device = ev["device"].to_numpy()
    traffic = ev["traffic"].to_numpy()
    digest = (unit(0, np.abs(device), 12) * 2**32).astype(">u4")
    hexed = hex_ids(np.frombuffer(digest.tobytes(), dtype=np.uint8).reshape(-1, 4))
    prefix = np.array(["w-", "i-", "a-", ""])[ev["platform"].to_numpy()]
    collector = np.array(catalog.COLLECTORS)[np.maximum(ev["collector"].to_numpy(), 0)]
    return pl.select(
        pl.when(pl.Series(traffic == PROBE))
        .then(pl.concat_str([pl.lit("probe-"), pl.Series(collector)]))
        .when(pl.Series(traffic == SYNTHETIC))
        .then(pl.lit("s-monitor01"))
        .when(pl.Series(traffic == BOT))
        .then(pl.concat_str([pl.lit("b-"), hexed]))
        .when(pl.Series(device >= 0))
        .then(pl.concat_str([pl.Series(prefix), hexed]))
    ).to_series()


def _account_refs(ev: pl.DataFrame, world: World) -> pl.Series:
    account = ev["account"].to_numpy()
    refs = pl.Series(world.acc_crm_id).gather(np.maximum(account, 0))
    return pl.select(pl.when(pl.Series(account >= 0)).then(refs)).to_series()


def _context(rng: np.random.Generator, ev: pl.DataFrame) -> pl.Expr:
    platform = ev["platform"].to_numpy()
    client = (ev["traffic"].to_numpy() == REAL) & (platform != catalog.SERVER)
    version = pl.Series(catalog.APP_VERSIONS).gather(rng.integers(0, len(catalog.APP_VERSIONS), size=ev.height))
    agent = pl.Series(_AGENTS).gather(ev["agent"])
    return pl.concat_str(
        [
            pl.lit('{"platform":"'),
            pl.Series(catalog.PLATFORMS).gather(platform),
            pl.lit('","app_version":'),
            pl.when(pl.Series(client))
            .then(pl.concat_str([pl.lit('"'), version, pl.lit('"')]))
            .otherwise(pl.lit("null")),
            pl.lit(',"user_agent":"'),
            agent,
            pl.lit('"}'),
        ]
    )


def _properties(
    cfg: SimConfig, rng: np.random.Generator, d: int, ev: pl.DataFrame, world: World
) -> tuple[pl.Series, np.ndarray]:
    """Each event type's own properties; an email typed into a free-text one now and then."""
    n = ev.height
    etype = ev["etype"].to_numpy()
    traffic = ev["traffic"].to_numpy()
    free_text = (traffic == REAL) & np.isin(etype, [catalog.SEARCH, COMMENT])
    pii = free_text & (rng.random(n) < cfg.dirt.event_pii)
    account = np.maximum(ev["account"].to_numpy(), 0)
    base = pl.DataFrame(
        {
            "i": np.arange(n),
            "etype": etype,
            "traffic": traffic,
            "anonymous": ev["anonymous"],
            "p1": rng.integers(1, 5_000, size=n),
            "p2": rng.integers(40, 3_000, size=n),
            "pick": rng.integers(0, 1 << 30, size=n),
            "pii": pii,
        }
    ).with_columns(
        email=pl.concat_str(
            [
                pl.Series(PII_FIRST).gather(rng.integers(0, len(PII_FIRST), size=n)),
                pl.lit("."),
                pl.Series(PII_LAST).gather(rng.integers(0, len(PII_LAST), size=n)),
                pl.lit("@"),
                pl.Series(world.acc_domain).gather(account),
            ]
        )
    )
    load_ms = (cfg.start + dt.timedelta(days=d)) >= cfg.effective_property_date
    parts = []
    for code in np.unique(etype).tolist():
        sub = base.filter(pl.col("etype") == code)
        parts.append(sub.select("i", props=_PROPERTIES[code](load_ms)))
    return pl.concat(parts).sort("i")["props"], pii


COMMENT = 9
PII_FIRST = np.array(["anna", "james", "maria", "lukas", "sophie", "oliver", "emma", "noah", "lea", "tom"])
PII_LAST = np.array(["smith", "weber", "martin", "jansen", "murphy", "garcia", "fischer", "walsh", "brown", "moreau"])


def _choice(values: np.ndarray) -> pl.Expr:
    return pl.lit(pl.Series(values.tolist(), dtype=pl.String)).gather(pl.col("pick") % len(values))


def _page(load_ms: bool) -> pl.Expr:
    path = (
        pl.when(pl.col("traffic") == PROBE)
        .then(pl.lit("/healthz"))
        .when(pl.col("anonymous") & (pl.col("traffic") == REAL))
        .then(pl.lit("/login"))
        .when(pl.col("traffic") != REAL)
        .then(pl.concat_str([pl.lit("/"), _choice(catalog.SECTIONS)]))
        .otherwise(pl.concat_str([pl.lit("/"), _choice(catalog.SECTIONS), pl.lit("/"), pl.col("p1").cast(pl.String)]))
    )
    parts = [pl.lit('{"path":"'), path, pl.lit('"')]
    if load_ms:
        parts += [
            pl.when(pl.col("traffic") == REAL)
            .then(pl.concat_str([pl.lit(',"load_ms":'), pl.col("p2").cast(pl.String)]))
            .otherwise(pl.lit("")),
        ]
    return pl.concat_str([*parts, pl.lit("}")])


def _search(_: bool) -> pl.Expr:
    query = pl.when(pl.col("pii")).then(pl.col("email")).otherwise(_choice(catalog.SEARCHES))
    return pl.concat_str(
        [pl.lit('{"query":"'), query, pl.lit('","results":'), (pl.col("p1") % 200).cast(pl.String), pl.lit("}")]
    )


def _comment(_: bool) -> pl.Expr:
    text = (
        pl.when(pl.col("pii"))
        .then(pl.concat_str([pl.lit("please send this to "), pl.col("email")]))
        .otherwise(_choice(catalog.COMMENTS))
    )
    return pl.concat_str([pl.lit('{"text":"'), text, pl.lit('"}')])


def _simple(template: str, *values: pl.Expr) -> object:
    """A properties object from a template with {} for each value (an int column or a choice)."""
    pieces = template.split("{}")

    def render(_: bool) -> pl.Expr:
        parts: list[pl.Expr] = [pl.lit(pieces[0])]
        for value, piece in zip(values, pieces[1:], strict=True):
            parts += [value.cast(pl.String), pl.lit(piece)]
        return pl.concat_str(parts)

    return render


_PROPERTIES = {
    catalog.PAGE_VIEWED: _page,
    catalog.SEARCH: _search,
    catalog.SIGNED_IN: _simple('{"method":"{}"}', _choice(catalog.SIGN_IN_METHODS)),
    3: _simple('{"report_id":"r-{}","template":"{}"}', pl.col("p1"), _choice(catalog.TEMPLATES)),
    4: _simple('{"report_id":"r-{}"}', pl.col("p1")),
    5: _simple('{"dashboard_id":"db-{}"}', pl.col("p1") % 400),
    6: _simple('{"dashboard_id":"db-{}","channel":"{}"}', pl.col("p1") % 400, _choice(catalog.CHANNELS)),
    7: _simple('{"workflow_id":"wf-{}","duration_ms":{},"status":"ok"}', pl.col("p1") % 500, pl.col("p2")),
    8: _simple('{"connector":"{}","records":{}}', _choice(catalog.CONNECTORS), pl.col("p2")),
    COMMENT: _comment,
    catalog.EXPORTED: _simple('{"report_id":"r-{}","format":"{}"}', pl.col("p1"), _choice(catalog.FORMATS)),
    catalog.SEAT_ASSIGNED: _simple('{"seat_type":"{}"}', pl.lit("full")),
    catalog.SEAT_REVOKED: _simple('{"seat_type":"{}"}', pl.lit("full")),
}


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
def _dirt(d: int, keys: pl.Series, column: str, kind: str, klass: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": pl.Series([d] * keys.len(), dtype=pl.Int64),
            "system": "product",
            "table": "events",
            "key": keys.cast(pl.String),
            "column": column,
            "kind": kind,
            "class": klass,
        }
    ).select(DIRT_COLUMNS)


def _event_dirt(
    cfg: SimConfig, d: int, ev: pl.DataFrame, copies: pl.DataFrame, ids: pl.Series, pii: np.ndarray
) -> pl.DataFrame:
    traffic = ev["traffic"].to_numpy()
    first = copies.filter(pl.col("kind") == 0).sort("ev")
    date = cfg.start + dt.timedelta(days=d)
    rows = [
        _dirt(d, ids.filter(pl.Series(traffic == BOT)), "*", "bot_traffic", "bogus"),
        _dirt(d, ids.filter(pl.Series(np.isin(traffic, [PROBE, SYNTHETIC]))), "*", "health_check", "bogus"),
        _dirt(d, ids.gather(copies.filter(pl.col("kind") == 1)["ev"]), "*", "duplicate_delivery", "noise"),
        _dirt(d, ids.filter(first["offline"]), "received_at", "late_delivery", "noise"),
        _dirt(d, ids.filter(first["skewed"]), "occurred_at", "clock_skew", "noise"),
        _dirt(d, ids.filter(pl.Series(pii)), "properties", "pii_in_property", "noise"),
    ]
    late = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, d)
    if late is not None:
        path = object_path(Path(), cfg.start, d, late[0], late[1]).as_posix()
        rows.append(_dirt(d, pl.Series([path]), "*", "out_of_order_hour", "noise"))
    if date == cfg.effective_property_date:
        rows.append(_dirt(d, pl.Series(["*"]), "properties.load_ms", "property_added", "noise"))
    if date == cfg.effective_rename_date:
        for code, name in catalog.RENAMED.items():
            rows.append(
                _dirt(d, pl.Series(["*"]), f"event_type:{catalog.EVENT_TYPES[code]}->{name}", "event_renamed", "noise")
            )
    return pl.concat(rows)


# ------------------------------------------------------------------ the objects and manifests
def _write(cfg: SimConfig, d: int, root: Path, lines: pl.DataFrame) -> pl.DataFrame:
    """Write today's objects (sorted by receipt), then the manifest of every hour complete today."""
    lines = lines.sort("receive_day", "hour", "collector", "sort_ms", "seq")
    data, offsets = line_bytes(lines["line"])
    keys = lines.select("receive_day", "hour", "collector").to_numpy()
    bounds = np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1 if len(keys) else np.array([], dtype=np.int64)
    starts = np.concatenate([[0], bounds]).astype(np.int64) if len(keys) else np.array([], dtype=np.int64)
    stops = np.concatenate([bounds, [len(keys)]]).astype(np.int64) if len(keys) else np.array([], dtype=np.int64)
    flag = lines["flag"].to_numpy()
    written: dict[Path, dict[str, object]] = {}
    dirt: list[pl.DataFrame] = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        receive_day, hour, collector = (int(x) for x in keys[a])
        path = object_path(root, cfg.start, receive_day, hour, collector)
        body = bytes(data[offsets[a] - offsets[0] : offsets[b] - offsets[0]])
        blob = isal_zlib.compress(body, 1, wbits=31)
        _atomic(path, blob)
        written[path] = {"lines": b - a, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        name = path.relative_to(root).as_posix()
        for kind, code in (("truncated_object", TRUNCATED), ("malformed_line", MALFORMED)):
            at = np.flatnonzero(flag[a:b] == code) + 1
            if len(at):
                dirt.append(_dirt(d, pl.Series([f"{name}:{i}" for i in at.tolist()]), "*", kind, "bogus"))
    for receive_day, hour in _complete_hours(cfg, d):
        _manifest(cfg, root, receive_day, hour, written, d)
    return pl.concat(dirt) if dirt else _dirt(d, pl.Series([], dtype=pl.String), "*", "", "")


def _complete_hours(cfg: SimConfig, d: int) -> list[tuple[int, int]]:
    """Hours whose last object arrives today: today's on-time ones, and yesterday's delayed one."""
    today = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, d)
    hours = [(d, h) for h in range(24) if today is None or h != today[0]]
    yesterday = delayed_object(cfg.seed, cfg.dirt.event_delayed_hour, d - 1) if d > 0 else None
    if yesterday is not None:
        hours.insert(0, (d - 1, yesterday[0]))
    return hours


def _manifest(
    cfg: SimConfig, root: Path, receive_day: int, hour: int, written: dict[Path, dict[str, object]], d: int
) -> None:
    objects = []
    for c, name in enumerate(catalog.COLLECTORS):
        path = object_path(root, cfg.start, receive_day, hour, c)
        info = written.get(path) or _describe(path)
        objects.append({"name": path.name, "collector": name, **info})
    delivered = dt.datetime.combine(cfg.start + dt.timedelta(days=receive_day), dt.time(hour)) + dt.timedelta(
        hours=1, minutes=2
    )
    if receive_day < d:
        delivered = dt.datetime.combine(cfg.start + dt.timedelta(days=d), dt.time(3, 17))
    manifest = {
        "date": (cfg.start + dt.timedelta(days=receive_day)).isoformat(),
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

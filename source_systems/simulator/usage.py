"""Who uses the product how much, day by day, following the business.

The users are the CRM's contacts. A customer's users get a seat over the weeks after it goes live (the
ramp-up), keep it while the customer is live or paused, give seats up as its latent health falls and lose
them when it churns; a customer won back starts afresh. A seated user of a live customer uses the product
on working days, in the working hours of their account's country, in sessions of events a few seconds to
minutes apart: a few power users, many occasional ones. How much they do, and how many of the product's
features the customer still touches, follows the customer's health (simulator/health.py); a paused
customer's users do nothing.

Traits that never change (how active a user is, when they get a seat, which features a customer takes up
and when) come from a hash of the seed and the id rather than from state, so they are the same whichever
day they are first needed. Everything else is drawn from the day's own random stream.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from source_systems.product import catalog
from source_systems.simulator import health
from source_systems.simulator.rng import stream
from source_systems.simulator.state import State, frame
from source_systems.simulator.world import World

NONE = -(10**9)  # no episode of use under way
EVENTS_PER_ACTIVE_DAY = 105.0  # a typical user on a day they use the product at full engagement
RAMP_DAYS = 21
SEAT_DELAY_DAYS = 7.0  # mean wait for a seat after go-live
HYSTERESIS = 0.05
DAY_MS = 86_400_000
MAX_LATENCY_MS = 3_100  # from a client's send to the collector's receipt (simulator/events.py)


def unit(seed: int, ids: np.ndarray, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) per id, the same for the same seed, id and salt (splitmix64)."""
    x = np.asarray(ids, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= np.uint64((seed * 1_000_003 + salt * 7919) & 0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return np.asarray((x >> np.uint64(11)).astype(np.float64) / float(1 << 53))


def weights(seed: int, users: np.ndarray) -> np.ndarray:
    """How much each user does on a day they use the product: lognormal with mean 1 (a few power users)."""
    u1 = np.maximum(unit(seed, users, 1), 1e-12)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * unit(seed, users, 2))
    sigma = 1.0
    return np.asarray(np.minimum(np.exp(sigma * z - sigma**2 / 2), 40.0))


def habit(seed: int, users: np.ndarray) -> np.ndarray:
    """On how many working days each user uses the product: most now and then, some every day."""
    return np.asarray(0.05 + 0.9 * unit(seed, users, 13) ** 1.3)


def mobile_share(seed: int, users: np.ndarray) -> np.ndarray:
    u = unit(seed, users, 3)
    return np.asarray(np.where(u < 0.45, 0.0, 0.1 + 0.5 * unit(seed, users, 4)))


def seat_delay(seed: int, users: np.ndarray) -> np.ndarray:
    return np.minimum(-SEAT_DELAY_DAYS * np.log(np.maximum(unit(seed, users, 5), 1e-12)), 45).astype(np.int64)


def loyalty(seed: int, users: np.ndarray) -> np.ndarray:
    """The lower, the longer a declining customer keeps this user's seat."""
    return unit(seed, users, 6)


def device_skew_ms(seed: int, devices: np.ndarray, rate: float) -> np.ndarray:
    """A few devices' clocks are off by minutes, hours or days (the same offset every time)."""
    skewed = unit(seed, devices, 7) < rate
    kind = unit(seed, devices, 8)
    size = unit(seed, devices, 9)
    minutes = np.where(kind < 0.6, 1 + size * 58, np.where(kind < 0.9, 60 + size * 1380, 1440 + size * 2880))
    sign = np.where(unit(seed, devices, 10) < 0.5, -1, 1)
    return np.where(skewed, (sign * minutes * 60_000).astype(np.int64) + 1, 0).astype(np.int64)


@dataclass
class Day:
    """What the customers' users did on one day, one entry per event, in true (UTC) time."""

    user: np.ndarray  # row of the users table
    etype: np.ndarray  # catalog code
    true_ms: np.ndarray  # epoch milliseconds
    session: np.ndarray  # session number within the day (seat events: -1)
    platform: np.ndarray
    anonymous: np.ndarray  # before sign-in: the event carries only the device
    users: pl.DataFrame  # the users table after today's seat changes


def users_today(state: State, world: World) -> pl.DataFrame:
    """The users table, with today's new contacts added (no seat yet)."""
    users = state.table("product_users")
    contacts = state.table("contacts")
    new = contacts.filter(~pl.col("contact").is_in(users["user"].implode())) if users.height else contacts
    if new.height:
        acc = new["account"].to_numpy()
        users = pl.concat(
            [
                users,
                frame(
                    "product_users",
                    user=new["contact"],
                    account=acc,
                    customer=world.acc_customer[acc],
                    created_day=new["created_day"],
                    seated=[False] * new.height,
                    stitched_known=[2**31] * new.height,
                ),
            ]
        )
    return users


def episodes(state: State, holding: np.ndarray) -> np.ndarray:
    """Day each customer's current spell of use began (NONE when it holds no live or paused contract)."""
    n = len(holding)
    table = state.table("product_customers")
    start = table["episode_start"].to_numpy().copy() if table.height == n else np.full(n, NONE, dtype=np.int64)
    contracts = state.table("contracts").filter(pl.col("status").is_in([1, 2, 3]))
    first_live = np.full(n, NONE, dtype=np.int64)
    if contracts.height:
        agg = contracts.group_by("customer").agg(pl.col("live_day").min())
        first_live[agg["customer"].to_numpy()] = agg["live_day"].to_numpy()
    start = np.where(holding & (start == NONE), first_live, start)
    start = np.where(holding, start, NONE)
    state.replace("product_customers", frame("product_customers", customer=np.arange(n), episode_start=start))
    return np.asarray(start)


def activities_used(seed: int, d: int, episode: np.ndarray, h: np.ndarray) -> np.ndarray:
    """[customer, activity]: which of the product's activities each customer's users reach today."""
    n = len(episode)
    cust = np.arange(n, dtype=np.int64)
    used = np.zeros((n, len(catalog.ACTIVITIES)), dtype=bool)
    reach = health.breadth(h) / health.breadth(np.array(0.7))
    for a, (_, _, share) in enumerate(catalog.ACTIVITIES):
        delay = (unit(seed, cust, 100 + a) * 60).astype(np.int64)
        used[:, a] = (d - episode >= delay) & (unit(seed, cust, 200 + a) < share * reach)
    return used


def plan(
    seed: int,
    start: dt.date,
    d: int,
    state: State,
    world: World,
    using: np.ndarray,
    holding: np.ndarray,
    h: np.ndarray,
) -> Day:
    """Seats and events of day ``d``. ``using``: customers live today; ``holding``: live or paused."""
    rng = stream(seed, d, "product:usage")
    users = users_today(state, world)
    ids = users["user"].to_numpy()
    cust = users["customer"].to_numpy()
    episode = episodes(state, holding)
    delay = seat_delay(seed, ids)
    share = health.seat_share(h)[cust]
    keep = loyalty(seed, ids)
    seated = users["seated"].to_numpy()
    eligible = holding[cust] & (d >= users["created_day"].to_numpy()) & (d >= episode[cust] + delay)
    target = eligible & np.where(seated, keep < share + HYSTERESIS, keep < share - HYSTERESIS)
    users = users.with_columns(seated=pl.Series(target))
    changed = np.flatnonzero(target != seated)
    day_ms = (start - dt.date(1970, 1, 1)).days * DAY_MS + d * DAY_MS

    # usage: seated users of live customers
    ramp = np.clip((d - (episode[cust] + delay)) / RAMP_DAYS + 0.15, 0.15, 1.0)
    weekday = catalog.WEEKDAY_FACTOR[(start + dt.timedelta(days=d)).weekday()]
    keen = np.sqrt(health.engagement(h)[cust])  # a declining customer's users come less often, do less
    comes = rng.random(len(ids)) < habit(seed, ids) * weekday * keen * ramp
    lam = EVENTS_PER_ACTIVE_DAY * weights(seed, ids) * keen
    n_events = rng.poisson(np.where(comes & target & using[cust], lam, 0.0))
    events = _sessions(rng, seed, world, users, n_events, day_ms, episode, h, d)
    seat_ms = day_ms + 8 * 3_600_000 + np.sort(rng.integers(0, 10 * 3_600_000, size=len(changed)))
    k = len(changed)
    return Day(
        user=np.concatenate([events[0], changed]),
        etype=np.concatenate(
            [events[1], np.where(target[changed], catalog.SEAT_ASSIGNED, catalog.SEAT_REVOKED)]
        ).astype(np.int64),
        true_ms=np.concatenate([events[2], seat_ms]),
        session=np.concatenate([events[3], np.full(k, -1, dtype=np.int64)]),
        platform=np.concatenate([events[4], np.full(k, catalog.SERVER, dtype=np.int64)]),
        anonymous=np.concatenate([events[5], np.zeros(k, dtype=bool)]),
        users=users,
    )


def _sessions(
    rng: np.random.Generator,
    seed: int,
    world: World,
    users: pl.DataFrame,
    n_events: np.ndarray,
    day_ms: int,
    episode: np.ndarray,
    h: np.ndarray,
    d: int,
) -> tuple[np.ndarray, ...]:
    """Group each user's events of the day into sessions and give every event a time and a type."""
    active = np.flatnonzero(n_events > 0)
    per_user = n_events[active]
    total = int(per_user.sum())
    ids = users["user"].to_numpy()
    n_sess = np.minimum(per_user, 1 + rng.poisson((per_user - 1) / 12.0))
    sess_user = np.repeat(active, n_sess)
    ns = len(sess_user)
    mobile = rng.random(ns) < mobile_share(seed, ids)[sess_user]
    platform = np.where(mobile, np.where(rng.random(ns) < 0.55, catalog.IOS, catalog.ANDROID), catalog.WEB)
    cdf = np.cumsum(catalog.HOUR_WEIGHTS) / catalog.HOUR_WEIGHTS.sum()
    local_hour = np.searchsorted(cdf, rng.random(ns), side="right")
    countries, where = np.unique(world.acc_country, return_inverse=True)
    acc_offset = np.array([catalog.UTC_OFFSET[c] for c in countries.tolist()], dtype=np.int64)[where]
    offset = acc_offset[users["account"].to_numpy()[sess_user]]
    sess_start = day_ms + ((local_hour - offset) % 24) * 3_600_000 + rng.integers(0, 3_600_000, size=ns)
    # events to sessions, in order
    first_sess = np.repeat(np.cumsum(n_sess) - n_sess, per_user)
    ev_sess = first_sess + (rng.random(total) * np.repeat(n_sess, per_user)).astype(np.int64)
    ev_sess.sort()
    counts = np.bincount(ev_sess, minlength=ns)
    sess_first = np.cumsum(counts) - counts
    pos = np.arange(total) - sess_first[ev_sess]
    gaps = rng.exponential(40_000.0, size=total).astype(np.int64) + 300
    gaps[pos == 0] = 0
    cum = np.cumsum(gaps)
    offset = cum - cum[sess_first[ev_sess]]
    # a session ends before midnight, network delay included (one that would not starts earlier): a day's
    # use counts for its day
    length = np.zeros(ns, dtype=np.int64)
    np.maximum.at(length, ev_sess, offset)
    sess_start = np.minimum(sess_start, day_ms + DAY_MS - MAX_LATENCY_MS - 1 - length)
    true_ms = sess_start[ev_sess] + offset
    user = sess_user[ev_sess]
    ev_platform = platform[ev_sess]
    # web sessions often start signed out: a login page view from the device alone, then the sign-in
    signs_in = (platform == catalog.WEB) & (counts >= 2) & (rng.random(ns) < 0.35)
    in_sign_in = signs_in[ev_sess]
    anonymous = in_sign_in & (pos == 0)
    # what each event does
    r = rng.random(total)
    pick = rng.random(total)
    n_act = len(catalog.ACTIVITIES)
    act = np.minimum(((r - catalog.CORE_SHARE) / (1 - catalog.CORE_SHARE) * n_act).astype(np.int64), n_act - 1)
    act = np.maximum(act, 0)
    # an activity's event type: one of its types, picked from all activities' types in one table
    kinds = np.array([len(types) for _, types, _ in catalog.ACTIVITIES])
    choices = np.concatenate([np.array(types, dtype=np.int64) for _, types, _ in catalog.ACTIVITIES])
    act_type = choices[np.cumsum(kinds)[act] - kinds[act] + (pick * kinds[act]).astype(np.int64)]
    used = activities_used(seed, d, episode, h)
    cust = users["customer"].to_numpy()[user]
    reaches = used[cust, act]
    core = np.where(r < catalog.CORE_SHARE * 0.8, catalog.PAGE_VIEWED, catalog.SEARCH)
    etype = np.where((r < catalog.CORE_SHARE) | ~reaches, core, act_type)
    etype = np.where((r >= catalog.CORE_SHARE) & ~reaches, catalog.PAGE_VIEWED, etype)
    etype = np.where(anonymous, catalog.PAGE_VIEWED, np.where(in_sign_in & (pos == 1), catalog.SIGNED_IN, etype))
    return user, etype, true_ms, ev_sess, ev_platform, anonymous

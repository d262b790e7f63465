"""The latent health of each customer: the hidden cause behind churn, and what the systems show of it.

A customer's health is a number between 0 and 1 that nobody in the business can see. It wanders around
the customer's own baseline, and now and then a decline sets in (a champion leaves, a budget is cut, a
competitor wins the next project) that drags it down over weeks. Everything that can go wrong with a
customer becomes more likely as its health falls: cancellation requests, pauses, late or partial payments,
seats given up, fewer people using the product and fewer of its features. So the systems record the
decline, each with its own noise, weeks before the cancellation request, which is what a churn model can
learn from. A few customers cancel at random, whatever their health (an acquisition, a reorganisation):
churn with no warning, as real customers do.

Health moves once a day for every customer, drawn from the day's own random stream, so continuing a
simulation gives the same path as one shot. The engine asks the hazards below; the product's usage reads
the engagement, breadth and seat share; the truth keeps the daily values and each churn's cause.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from source_systems.simulator.rng import stream
from source_systems.simulator.state import State, frame

# Daily chance that a decline sets in for a customer with a live or paused contract, and its course.
DECLINE_ONSET = 0.0011
DECLINE_DAYS = (21, 85)  # how long the slide lasts
DECLINE_RATE = (0.008, 0.025)  # health lost per day while it lasts
REVERSION = 0.03  # share of the gap to the baseline closed each day outside a decline
NOISE = 0.015
# Why a contract was cancelled or terminated (kept in the ledger's churn_causes).
CAUSE_HEALTH, CAUSE_SILENT, CAUSE_SCRIPTED = range(3)
CAUSES = np.array(["health", "silent", "scripted"])
SILENT_CANCEL = 0.00015  # cancellations with no warning, per live contract and day


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def cancel_hazard(h: np.ndarray) -> np.ndarray:
    """Daily chance of a cancellation request driven by health (the silent kind comes on top)."""
    return 0.00005 + 0.03 * _sigmoid((0.28 - h) / 0.05)


def pause_hazard(h: np.ndarray) -> np.ndarray:
    return 0.0002 + 0.004 * _sigmoid((0.35 - h) / 0.05)


def resume_chance(h: np.ndarray) -> np.ndarray:
    """Daily chance that a paused contract goes live again: mostly once health has come back."""
    return 0.005 + 0.04 * _sigmoid((h - 0.45) / 0.05)


def terminate_chance(h: np.ndarray) -> np.ndarray:
    """Daily chance that a paused contract is terminated."""
    return 0.001 + 0.012 * _sigmoid((0.3 - h) / 0.05)


def troubled_invoice(h: np.ndarray) -> np.ndarray:
    """Chance that an invoice is paid late, partly or never, because of the customer's health."""
    return 0.03 + 0.75 * _sigmoid((0.35 - h) / 0.07)


def engagement(h: np.ndarray) -> np.ndarray:
    """How much of its usual use the customer makes of the product (1 at a typical health of 0.7)."""
    return np.asarray(np.clip(h, 0.0, 1.0) ** 1.5 / 0.7**1.5)


def breadth(h: np.ndarray) -> np.ndarray:
    """The share of the features it has taken up that the customer still uses."""
    return np.asarray(np.clip(0.25 + h, 0.0, 1.0))


def seat_share(h: np.ndarray) -> np.ndarray:
    """The share of its users the customer keeps a seat for."""
    return np.asarray(np.clip(0.3 + h, 0.0, 1.0))


def baselines(seed: int, n_customers: int) -> np.ndarray:
    """Each customer's usual health, fixed for the world (most are healthy, a few never quite are)."""
    return np.asarray(stream(seed, -1, "health").beta(7.0, 3.0, size=n_customers))


def initial(state: State, seed: int, n_customers: int) -> None:
    """Every customer starts at its baseline, no decline under way."""
    base = baselines(seed, n_customers)
    state.replace(
        "health",
        frame(
            "health",
            customer=np.arange(n_customers),
            h=base,
            decline_left=np.zeros(n_customers, dtype=np.int64),
            decline_rate=np.zeros(n_customers),
        ),
    )


def current(state: State) -> np.ndarray:
    return state.table("health")["h"].to_numpy()


def restart(state: State, seed: int, customers: np.ndarray) -> None:
    """A customer that goes live again (a new customer, or one won back) starts afresh at its baseline."""
    if len(customers) == 0:
        return
    t = state.table("health")
    h = t["h"].to_numpy().copy()
    left = t["decline_left"].to_numpy().copy()
    h[customers] = baselines(seed, len(h))[customers]
    left[customers] = 0
    state.replace("health", t.with_columns(h=pl.Series(h), decline_left=pl.Series(left)))


def step(state: State, seed: int, d: int, in_relationship: np.ndarray) -> np.ndarray:
    """Move every customer's health by one day; declines start only for customers with a contract."""
    t = state.table("health")
    rng = stream(seed, d, "health")
    n = t.height
    h = t["h"].to_numpy().copy()
    base = baselines(seed, n)
    left = t["decline_left"].to_numpy().copy()
    rate = t["decline_rate"].to_numpy().copy()
    onset = rng.random(n) < DECLINE_ONSET
    days = rng.integers(DECLINE_DAYS[0], DECLINE_DAYS[1] + 1, size=n)
    slide = rng.uniform(*DECLINE_RATE, size=n)
    noise = rng.normal(0.0, NOISE, size=n)
    start = onset & in_relationship & (left == 0)
    left[start] = days[start]
    rate[start] = slide[start]
    declining = left > 0
    h = np.where(declining, h - rate, h + REVERSION * (base - h)) + noise
    h = np.clip(h, 0.0, 1.0)
    left = np.where(declining, left - 1, 0)
    state.replace("health", frame("health", customer=t["customer"], h=h, decline_left=left, decline_rate=rate))
    keep = np.flatnonzero(in_relationship)
    state.append("health_daily", frame("health_daily", day=[d] * len(keep), customer=keep, h=h[keep]))
    return h


def declining_already(state: State, rng: np.random.Generator, customers: np.ndarray, share: float = 0.06) -> None:
    """Some customers of the installed base are part-way through a decline on the first day."""
    t = state.table("health")
    h = t["h"].to_numpy().copy()
    left = t["decline_left"].to_numpy().copy()
    rate = t["decline_rate"].to_numpy().copy()
    picked = customers[rng.random(len(customers)) < share]
    total = rng.integers(DECLINE_DAYS[0], DECLINE_DAYS[1] + 1, size=len(picked))
    done = (rng.random(len(picked)) * total).astype(np.int64)
    rate[picked] = rng.uniform(*DECLINE_RATE, size=len(picked))
    left[picked] = total - done
    h[picked] = np.clip(h[picked] - rate[picked] * done, 0.0, 1.0)
    state.replace("health", t.with_columns(h=pl.Series(h), decline_left=pl.Series(left), decline_rate=pl.Series(rate)))

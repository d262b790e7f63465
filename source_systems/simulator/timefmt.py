"""Vectorised date and timestamp formatting for the systems' wire formats."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

EPOCH = dt.date(1970, 1, 1)


def epoch_seconds(start: dt.date, day: np.ndarray | int, sec: np.ndarray | int) -> np.ndarray:
    base = (start - EPOCH).days * 86400
    return np.asarray(base + np.asarray(day, dtype=np.int64) * 86400 + np.asarray(sec, dtype=np.int64))


def to_datetime(seconds: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(np.asarray(seconds, dtype=np.int64)), time_unit="s")


def sqlite_ts(seconds: np.ndarray) -> pl.Series:
    """ERP convention: UTC as 'YYYY-MM-DD HH:MM:SS' without a zone."""
    return to_datetime(seconds).dt.strftime("%Y-%m-%d %H:%M:%S")


def crm_ts(seconds: np.ndarray) -> pl.Series:
    """CRM canonical UTC form, as Salesforce writes SystemModstamp."""
    return to_datetime(seconds).dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def iso_date(start: dt.date, day: np.ndarray | int) -> pl.Series:
    days = np.atleast_1d(np.asarray(day, dtype=np.int64)) + (start - EPOCH).days
    return pl.Series(days).cast(pl.Int32).cast(pl.Date).dt.strftime("%Y-%m-%d")


def day_of(start: dt.date, d: int) -> dt.date:
    return start + dt.timedelta(days=d)

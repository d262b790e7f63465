"""The training label, from the marts: does the customer churn within the next 90 days?

This is the one place that looks past the scoring date, on purpose: a customer scored on D is labelled by
whether ``fct_customer_state_events`` records its state becoming ``churned`` on a day in (D, D + horizon].
The label is known only where the marts reach D + horizon; a later date gets no label, even where the
customer already churned: of a date whose horizon is not over only the churners would be known, and
labelling them alone would make the last dates all churners (training and held-out figures both biased).
The horizon is 90 days; a shorter one lets a tiny simulation exercise the whole loop (tests only).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

HORIZON_DAYS = 90
LABEL = "churns_within_horizon"


def churn_transitions(events: pl.DataFrame) -> pl.DataFrame:
    """(customer_id, changed_date) of every transition into ``churned``."""
    return events.filter(pl.col("to_state") == "churned").select("customer_id", "changed_date")


def label(
    features: pl.DataFrame, transitions: pl.DataFrame, last_known: dt.date, horizon_days: int = HORIZON_DAYS
) -> pl.DataFrame:
    """The features with the label added; rows whose horizon passes ``last_known`` get a null label."""
    keyed = features.select("customer_id", "date")
    hits = (
        keyed.join(transitions, on="customer_id", how="inner")
        .filter(
            (pl.col("changed_date") > pl.col("date"))
            & (pl.col("changed_date") <= pl.col("date") + pl.duration(days=horizon_days))
        )
        .select("customer_id", "date")
        .unique()
        .with_columns(pl.lit(True).alias("_hit"))
    )
    horizon_known = pl.col("date") + pl.duration(days=horizon_days) <= pl.lit(last_known)
    return (
        features.join(hits, on=["customer_id", "date"], how="left")
        .with_columns(pl.when(horizon_known).then(pl.col("_hit").fill_null(False)).otherwise(None).alias(LABEL))
        .drop("_hit")
    )

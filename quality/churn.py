"""pandera models of the churn-risk scores and their feature drift: what blocks publishing a scoring date.

A model whose scores went degenerate (every customer the same probability, or none at all) or that scored
customers unlike the ones it learnt from (a feature's mean moved too far from training) must not reach the
account owners. The limits come from registry/churn_risk.yaml and arrive as columns of the dataset.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from registry.churn_risk import load_churn_risk

BANDS = load_churn_risk().band_names


class ChurnRisk(pa.DataFrameModel):
    """marts.customer_churn_risk: one probability per customer and date, banded, never degenerate."""

    customer_id: str
    score_date: pl.Date
    churn_probability: pl.Float64 = pa.Field(nullable=True, ge=0.0, le=1.0)
    risk_band: str = pa.Field(nullable=True, isin=BANDS)
    top_reasons: str = pa.Field(nullable=True)
    model_version: str = pa.Field(str_length={"min_value": 1})

    class Config:
        unique = ("customer_id", "score_date")  # the grain
        strict = False

    @pa.dataframe_check(name="scores_not_all_missing")
    @classmethod
    def not_all_missing(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A scoring date where no customer has a probability: the model failed, whatever the rows say."""
        return data.lazyframe.select(pl.col("churn_probability").is_not_null().any().over("score_date"))

    @pa.dataframe_check(name="scores_not_all_equal")
    @classmethod
    def not_all_equal(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A scoring date where every customer got the same probability ranks nobody above anybody."""
        scored = pl.col("churn_probability").drop_nulls()
        return data.lazyframe.select(
            (scored.n_unique().over("score_date") > 1) | (scored.len().over("score_date") <= 1)
        )

    @pa.dataframe_check(name="band_follows_the_probability")
    @classmethod
    def band_present(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("churn_probability").is_null() == pl.col("risk_band").is_null())


class ChurnFeatureDrift(pa.DataFrameModel):
    """models.churn_feature_drift: each feature's mean on a scoring date, in training standard deviations."""

    score_date: pl.Date
    feature: str
    customers: pl.Int32 = pa.Field(ge=0)
    mean_shift_sd: pl.Float64 = pa.Field(nullable=True)
    max_shift_sd: pl.Float64 = pa.Field(gt=0)
    min_customers: pl.Int64 = pa.Field(ge=0)

    class Config:
        unique = ("score_date", "feature")
        strict = False

    @pa.dataframe_check(name="features_within_the_training_range")
    @classmethod
    def no_drift(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("customers") < pl.col("min_customers"))
            | (pl.col("mean_shift_sd").is_not_null() & (pl.col("mean_shift_sd").abs() <= pl.col("max_shift_sd")))
        )

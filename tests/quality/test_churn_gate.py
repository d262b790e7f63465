"""The gate blocks churn scores that went degenerate (all missing, all equal) or whose features drifted."""

from __future__ import annotations

import datetime as dt

import polars as pl

from quality.churn import ChurnFeatureDrift, ChurnRisk
from quality.gate import validate

DAY = dt.date(2025, 6, 1)


def risk(probabilities: list[float | None], day: dt.date = DAY) -> pl.DataFrame:
    n = len(probabilities)
    bands = [None if p is None else ("high" if p >= 0.4 else "low") for p in probabilities]
    return pl.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "score_date": [day] * n,
            "churn_probability": probabilities,
            "risk_band": bands,
            "top_reasons": ["delinquent"] * n,
            "model_version": ["churn-x"] * n,
        },
        schema_overrides={"churn_probability": pl.Float64, "risk_band": pl.String},
    )


def test_varied_scores_pass() -> None:
    assert validate("scores", ChurnRisk, risk([0.1, 0.5, None, 0.05])).passed


def test_scores_all_missing_on_a_date_block_publishing() -> None:
    outcome = validate("scores", ChurnRisk, pl.concat([risk([None, None, None]), risk([0.1, 0.2], DAY.replace(day=2))]))
    assert not outcome.passed
    assert outcome.failed_checks == {"scores_not_all_missing": 3}  # the bad date's rows, not the good date's


def test_scores_all_equal_on_a_date_block_publishing() -> None:
    outcome = validate("scores", ChurnRisk, risk([0.3, 0.3, 0.3, None]))
    assert not outcome.passed
    assert "scores_not_all_equal" in outcome.failed_checks


def test_a_probability_out_of_range_or_without_its_band_fails() -> None:
    frame = risk([0.1, 0.2]).with_columns(risk_band=pl.lit(None, dtype=pl.String))
    assert "band_follows_the_probability" in validate("scores", ChurnRisk, frame).failed_checks
    assert not validate("scores", ChurnRisk, risk([0.1, 1.5])).passed


def drift(shifts: list[float | None], customers: int = 100) -> pl.DataFrame:
    n = len(shifts)
    return pl.DataFrame(
        {
            "score_date": [DAY] * n,
            "feature": [f"f{i}" for i in range(n)],
            "model_version": ["churn-x"] * n,
            "customers": [customers] * n,
            "mean_shift_sd": shifts,
            "max_shift_sd": [1.5] * n,
            "min_customers": [30] * n,
        },
        schema_overrides={"customers": pl.Int32, "mean_shift_sd": pl.Float64},
    )


def test_drifted_features_block_publishing() -> None:
    assert validate("drift", ChurnFeatureDrift, drift([0.1, -1.2, 0.0])).passed
    outcome = validate("drift", ChurnFeatureDrift, drift([0.1, -2.0, 3.0, None]))
    assert outcome.failed_checks == {"features_within_the_training_range": 3}
    assert sorted(outcome.failure_cases["feature"].to_list()) == ["f1", "f2", "f3"]


def test_drift_is_not_judged_on_a_handful_of_customers() -> None:
    assert validate("drift", ChurnFeatureDrift, drift([4.0], customers=5)).passed

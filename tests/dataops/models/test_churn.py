"""The model's training loop on synthetic rows: time-based split, determinism, the baseline and the metrics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dataops.models import artefacts
from dataops.models.churn import TrainingError, baseline, time_split, train
from dataops.models.evaluate import metrics, precision_at_top
from dataops.models.labels import HORIZON_DAYS, LABEL

START = dt.date(2024, 1, 1)


def rows(seed: int = 0, weeks: int = 60, customers: int = 40) -> pl.DataFrame:
    """Weekly rows; churn follows late invoices and cancellation requests, with noise."""
    rng = np.random.default_rng(seed)
    n = weeks * customers
    late = rng.poisson(0.5, n).astype(float)
    cancel = (rng.random(n) < 0.05).astype(float)
    delinquent = (rng.random(n) < 0.05).astype(float)
    churn = rng.random(n) < 1 / (1 + np.exp(-(-3 + 1.2 * late + 2.5 * cancel + delinquent)))
    return pl.DataFrame(
        {
            "customer_id": [f"C{i % customers:03d}" for i in range(n)],
            "date": [START + dt.timedelta(weeks=i // customers) for i in range(n)],
            "late_invoices_180d": late,
            "contracts_cancellation_requested": cancel,
            "delinquent": delinquent,
            "tenure_days": rng.integers(0, 900, n).astype(float),
            LABEL: churn,
        }
    )


def test_training_never_sees_a_label_that_was_unknown_when_the_held_out_months_begin() -> None:
    split = time_split(rows(), holdout_days=120)
    assert split.train["date"].max() + dt.timedelta(days=HORIZON_DAYS) < split.test_start  # type: ignore[operator]
    assert split.test["date"].min() >= split.test_start  # type: ignore[operator]
    assert split.test["date"].max() == rows()["date"].max()


def test_the_same_data_and_seed_give_the_same_model_whatever_the_row_order() -> None:
    data = rows()
    one = train(data, seed=3)
    two = train(data.sample(fraction=1.0, shuffle=True, seed=11), seed=3)
    assert one.version == two.version
    np.testing.assert_array_equal(one.probabilities(data), two.probabilities(data))
    assert one.score(data).equals(two.score(data))
    assert train(data, seed=4).version != one.version
    assert train(rows(seed=1), seed=3).version != one.version


def test_the_top_reasons_are_the_features_that_raise_the_score() -> None:
    data = rows()
    model = train(data)
    risky = pl.DataFrame(
        {
            "customer_id": ["X"],
            "date": [START],
            "late_invoices_180d": [6.0],
            "contracts_cancellation_requested": [1.0],
            "delinquent": [0.0],
            "tenure_days": [400.0],
        }
    )
    scored = model.score(risky)
    reasons = scored["top_reasons"].item().split("; ")
    assert set(reasons[:2]) == {"contracts_cancellation_requested", "late_invoices_180d"}
    assert "delinquent" not in reasons  # a zero where most are zero does not raise the score
    assert scored["model_version"].item() == model.version


def test_one_outcome_cannot_train() -> None:
    with pytest.raises(TrainingError, match="only one outcome"):
        train(rows().with_columns(pl.lit(False).alias(LABEL)))


def test_the_baseline_flags_delinquent_or_cancelling_customers() -> None:
    frame = pl.DataFrame({"delinquent": [0.0, 1.0, 0.0, 1.0], "contracts_cancellation_requested": [0.0, 0.0, 2.0, 1.0]})
    assert baseline(frame).to_list() == [0.0, 1.0, 1.0, 1.0]


def test_precision_at_the_top_breaks_ties_at_random_in_expectation() -> None:
    outcomes = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    ranked = np.arange(20, 0, -1, dtype=float)  # the first two rows are the top 10%
    assert precision_at_top(ranked, outcomes) == 0.5
    flat = np.zeros(20)  # all tied: the base rate
    assert precision_at_top(flat, outcomes) == pytest.approx(3 / 20)


def test_metrics_compare_the_model_with_the_baseline(tmp_path: object) -> None:
    data = rows()
    split = time_split(data, holdout_days=120)
    model = train(split.train)
    scored = model.score(split.test).with_columns(baseline=baseline(split.test), outcome=split.test[LABEL])
    measured = metrics(scored, "outcome")
    assert measured["rows"] == split.test.height and measured["churners"] == int(split.test[LABEL].sum())
    for key in ("roc_auc", "precision_at_top_10pct", "brier", "expected_calibration_error"):
        assert 0.0 <= measured["model"][key] <= 1.0
    assert sum(b["rows"] for b in measured["model"]["bins"]) == split.test.height
    lift = measured["lift_over_baseline"]
    assert lift["roc_auc_margin"] == pytest.approx(measured["model"]["roc_auc"] - measured["baseline"]["roc_auc"])


def test_a_version_is_stored_beside_its_metrics_and_reloads_the_same(tmp_path: pytest.TempPathFactory) -> None:
    root = tmp_path / "churn"  # type: ignore[operator]
    data = rows()
    model = train(data)
    folder = artefacts.save(root, model, {"m": 1}, {"version": model.version})
    assert folder.name == model.version and artefacts.current_version(root) == model.version
    assert artefacts.read_json(root, artefacts.METRICS_FILE) == {"m": 1}
    assert artefacts.load(root).score(data).equals(model.score(data))
    with pytest.raises(artefacts.NoModel):
        artefacts.load(root / "nothing")

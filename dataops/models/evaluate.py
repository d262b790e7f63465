"""How good the scores are: ROC AUC, precision at the top tenth, calibration, and the lift over the baseline.

The outcomes are given by the caller: the marts' own labels when the pipeline judges its retrain, the
simulator's truth (who really churned within 90 days) when the data scientists' loop evaluates against it
(``dataops model evaluate``). Metrics are plain numbers in a dict, written as JSON beside the model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

# scikit-learn is imported where a metric is computed, as dataops/models/churn.py imports it where a model is
# fitted: every build run's churn scoring imports this module (through workflow.py), with or without a model to
# score, and few processes evaluate a model (scikit-learn's metrics cost about 0.85 CPU-s to import).

TOP_SHARE = 0.10
CALIBRATION_BINS = 10


def precision_at_top(scores: np.ndarray, outcomes: np.ndarray, share: float = TOP_SHARE) -> float | None:
    """Share of churners among the ``share`` highest scores, ties broken at random in expectation.

    A score with many ties (the rule baseline is 0 or 1) gets the precision a random pick among the tied
    rows at the cut would give on average, so that the comparison does not depend on row order.
    """
    n = len(scores)
    if n == 0:
        return None
    k = max(1, math.ceil(share * n))
    order = np.sort(scores)[::-1]
    cut = order[k - 1]
    above = scores > cut
    tied = scores == cut
    need = k - int(above.sum())
    hits = float(outcomes[above].sum()) + need * float(outcomes[tied].mean())
    return hits / k


def calibration(probabilities: np.ndarray, outcomes: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Brier score, and per tenth of predicted risk the mean prediction against the observed rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    table = []
    gap = 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        predicted, observed = float(probabilities[mask].mean()), float(outcomes[mask].mean())
        gap += mask.sum() / len(probabilities) * abs(predicted - observed)
        table.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "rows": int(mask.sum()),
                "predicted": predicted,
                "observed": observed,
            }
        )
    from sklearn.metrics import brier_score_loss

    return {"brier": float(brier_score_loss(outcomes, probabilities)), "expected_calibration_error": gap, "bins": table}


def _auc(scores: np.ndarray, outcomes: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(outcomes, scores)) if len(np.unique(outcomes)) == 2 else None


def metrics(scored: pl.DataFrame, outcome: str) -> dict[str, Any]:
    """Metrics of ``probability`` and ``baseline`` against the boolean column ``outcome`` (nulls dropped)."""
    rows = scored.filter(pl.col(outcome).is_not_null())
    y = rows[outcome].cast(pl.Int64).to_numpy()
    p = rows["probability"].to_numpy()
    b = rows["baseline"].to_numpy()
    out: dict[str, Any] = {
        "rows": rows.height,
        "customers": rows["customer_id"].n_unique(),
        "dates": rows["date"].n_unique(),
        "churners": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else None,
    }
    if not len(y):
        return out
    model_auc, base_auc = _auc(p, y), _auc(b, y)
    model_top, base_top = precision_at_top(p, y), precision_at_top(b, y)
    out["model"] = {"roc_auc": model_auc, "precision_at_top_10pct": model_top, **calibration(p, y)}
    out["baseline"] = {
        "roc_auc": base_auc,
        "precision_at_top_10pct": base_top,
        "flagged_share": float(b.mean()),
        "precision_of_flagged": float(y[b > 0].mean()) if (b > 0).any() else None,
    }
    out["lift_over_baseline"] = {
        "roc_auc_margin": None if model_auc is None or base_auc is None else model_auc - base_auc,
        "precision_at_top_10pct_ratio": None if not base_top or model_top is None else model_top / base_top,
    }
    return out


def against_truth(scored: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """The scored rows with the given outcome (``customer_id``, ``date``, ``truth``)."""
    return scored.join(truth.select("customer_id", "date", "truth"), on=["customer_id", "date"], how="left")

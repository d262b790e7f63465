"""The churn-risk model: a time-based split, a scikit-learn model, the rule baseline, scores with reasons.

The model is a logistic regression on the log of each (non-negative) feature, standardised. It is chosen
for what it gives the account owner, not only its accuracy: each score decomposes into one contribution
per feature (coefficient times standardised value), so the top reasons for a customer's risk are the
features that push its score up the most, in the model's own terms. The baseline is the rule a
collections team would use without a model: delinquent or a cancellation requested.

Everything is deterministic given the seed and the data: the solver is deterministic, the rows are sorted
before fitting, and the version is a digest of the training data, the parameters and the seed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dataops.models.features import KEY
from dataops.models.labels import HORIZON_DAYS, LABEL

# scikit-learn is imported where a model is fitted (_pipeline): every process that loads the code location
# imports this module, and few of them fit a model.
if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

TOP_REASONS = 3
DEFAULT_SEED = 29
DEFAULT_C = 0.5


class TrainingError(ValueError):
    """The data cannot train a model (no labelled rows, or only one outcome among them)."""


@dataclass(frozen=True)
class Split:
    """Rows to fit on and rows held out: every training label was known before the first held-out date."""

    train: pl.DataFrame
    test: pl.DataFrame
    test_start: dt.date

    @property
    def train_window(self) -> tuple[dt.date, dt.date]:
        return self.train["date"].min(), self.train["date"].max()  # type: ignore[return-value]

    @property
    def test_window(self) -> tuple[dt.date, dt.date]:
        return self.test["date"].min(), self.test["date"].max()  # type: ignore[return-value]


def time_split(labelled: pl.DataFrame, holdout_days: int, horizon_days: int = HORIZON_DAYS) -> Split:
    """Hold out the last ``holdout_days`` of labelled dates; train on dates whose horizon ended before them.

    The dates between (their horizon reaches into the held-out period) are used for neither: a label that
    was not yet known on the first held-out date must not train the model tested there.
    """
    known = labelled.filter(pl.col(LABEL).is_not_null())
    if known.is_empty():
        raise TrainingError("no scoring date has a known label yet (the marts must reach its horizon past it)")
    last = known["date"].max()
    assert isinstance(last, dt.date)
    test_start = last - dt.timedelta(days=holdout_days - 1)
    train = known.filter(pl.col("date") + pl.duration(days=horizon_days) < test_start)
    test = known.filter(pl.col("date") >= test_start)
    return Split(train=train, test=test, test_start=test_start)


def baseline(features: pl.DataFrame) -> pl.Series:
    """The rule: delinquent or a cancellation requested (1.0), else 0.0."""
    flagged = (pl.col("delinquent") > 0) | (pl.col("contracts_cancellation_requested") > 0)
    return features.select(flagged.cast(pl.Float64).alias("baseline"))["baseline"]


@dataclass
class ChurnModel:
    """A fitted model with what it needs to score and explain: its features, version and training window."""

    pipeline: Pipeline
    features: list[str]
    version: str
    seed: int
    train_window: tuple[dt.date, dt.date]
    params: dict[str, Any] = field(default_factory=dict)

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"features missing from the frame to score: {missing}")
        return frame.select(self.features).to_numpy().astype(np.float64)

    def probabilities(self, frame: pl.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(self.matrix(frame))[:, 1])

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Per row and feature, how much the feature moves the log-odds from an average customer's."""
        x = self.matrix(frame)
        z = self.pipeline[:-1].transform(x)
        coef = self.pipeline[-1].coef_[0]
        return np.asarray(z * coef)

    def score(self, frame: pl.DataFrame, top: int = TOP_REASONS) -> pl.DataFrame:
        """(customer_id, date, probability, top_reasons, model_version) for every row of the frame."""
        if frame.is_empty():
            return pl.DataFrame(
                schema={
                    "customer_id": pl.String,
                    "date": pl.Date,
                    "probability": pl.Float64,
                    "top_reasons": pl.String,
                    "model_version": pl.String,
                }
            )
        contributions = self.contributions(frame)
        names = np.array(self.features)
        reasons = []
        for row in contributions:
            order = np.argsort(-row, kind="stable")[:top]
            reasons.append("; ".join(names[i] for i in order if row[i] > 0))
        return frame.select(*KEY).with_columns(
            probability=pl.Series(self.probabilities(frame)),
            top_reasons=pl.Series(reasons, dtype=pl.String),
            model_version=pl.lit(self.version),
        )


def _pipeline(seed: int, c: float) -> Pipeline:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("log", FunctionTransformer(np.log1p)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=c, max_iter=2000, random_state=seed)),
        ]
    )


def feature_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in (*KEY, LABEL)]


def train(train_rows: pl.DataFrame, seed: int = DEFAULT_SEED, c: float = DEFAULT_C) -> ChurnModel:
    """Fit the model on labelled rows (sorted first, so the fit does not depend on their order)."""
    rows = train_rows.filter(pl.col(LABEL).is_not_null()).sort(*KEY)
    if rows.is_empty():
        raise TrainingError("no labelled rows to train on")
    y = rows[LABEL].cast(pl.Int64).to_numpy()
    if len(np.unique(y)) < 2:
        raise TrainingError(
            f"the {rows.height} training rows hold only one outcome ({'churn' if y[0] else 'no churn'}): "
            "a longer window (or a larger scale) is needed"
        )
    features = feature_columns(rows)
    negative = [f for f in features if (rows[f] < 0).any()]
    if negative:
        raise TrainingError(f"features must be non-negative (they are log-transformed): {negative}")
    pipeline = _pipeline(seed, c)
    pipeline.fit(rows.select(features).to_numpy().astype(np.float64), y)
    first, last = rows["date"].min(), rows["date"].max()
    assert isinstance(first, dt.date) and isinstance(last, dt.date)
    params = {"C": c, "max_iter": 2000, "transform": "log1p+standardise", "model": "LogisticRegression"}
    return ChurnModel(
        pipeline=pipeline,
        features=features,
        version=model_version(rows, params, seed, last),
        seed=seed,
        train_window=(first, last),
        params=params,
    )


def model_version(rows: pl.DataFrame, params: dict[str, Any], seed: int, last: dt.date) -> str:
    """The last training date and a digest of the training rows, the parameters and the seed."""
    digest = hashlib.sha256()
    digest.update(rows.write_csv().encode())
    digest.update(json.dumps(params, sort_keys=True).encode())
    digest.update(str(seed).encode())
    return f"churn-{last:%Y%m%d}-{digest.hexdigest()[:10]}"

"""Retrain, score and evaluate the churn-risk model against a warehouse: what the assets and the CLI call.

Retraining builds features on every ``every_days``-th date of the warehouse's history, labels them from
the marts, holds out the last ``holdout_days`` of labelled dates, fits on the earlier ones, measures on
the held-out ones (against the marts' own labels: all the pipeline knows) and stores the model beside its
metrics and card. Evaluating scores the same held-out dates again and measures against outcomes the caller
gives: the simulator's truth in the data scientists' loop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect, query_frame
from dataops.models import artefacts, scores
from dataops.models.churn import DEFAULT_SEED, ChurnModel, baseline, time_split, train
from dataops.models.evaluate import against_truth, metrics
from dataops.models.features import Marts, available_sets, build_features, features_on, read_marts, scoring_dates
from dataops.models.labels import HORIZON_DAYS, LABEL, churn_transitions, label
from registry.churn_risk import ChurnRiskRules
from registry.loader import Registry, domain_owners

DEFAULT_EVERY_DAYS = 7
DEFAULT_HOLDOUT_DAYS = 182
OWNER_DOMAIN = "customer"
INTENDED_USE = (
    "Rank live and paused customers (ultimate parents) by their chance of churning within 90 days, so that "
    "account owners reach the riskiest first; the top reasons say where to look. Not for pricing, credit "
    "or any decision about a person; probabilities are calibrated on the held-out months only."
)
EVALUATION_FILE = "evaluation.json"


@dataclass(frozen=True)
class Retrained:
    model: ChurnModel
    folder: Path
    metrics: dict[str, Any]
    card: dict[str, Any]


def read_transitions(warehouse: Path) -> pl.DataFrame:
    with connect(warehouse, read_only=True) as conn:
        events = query_frame(conn, "select customer_id, to_state, changed_date from marts.fct_customer_state_events")
    return churn_transitions(events)


def history_bounds(marts: Marts) -> tuple[dt.date, dt.date]:
    days = marts["states"]["date_day"]
    first, last = days.min(), days.max()
    if not isinstance(first, dt.date) or not isinstance(last, dt.date):
        raise ValueError("the warehouse holds no customer states yet: run the pipeline first")
    return first, last


def labelled_features(
    marts: Marts, transitions: pl.DataFrame, registry: Registry, every_days: int, horizon_days: int = HORIZON_DAYS
) -> pl.DataFrame:
    """Features on every ``every_days``-th date back from the last, labelled where the horizon is known."""
    start, last = history_bounds(marts)
    days = scoring_dates(start, last, every_days)
    features = build_features(marts, days, registry.delinquency_days)
    return label(features, transitions, last, horizon_days)


def retrain(
    settings: Settings,
    registry: Registry,
    warehouse: Path | None = None,
    seed: int = DEFAULT_SEED,
    holdout_days: int = DEFAULT_HOLDOUT_DAYS,
    every_days: int = DEFAULT_EVERY_DAYS,
    horizon_days: int = HORIZON_DAYS,
) -> Retrained:
    """Train on the warehouse's history, measure on its held-out months, store and make it current."""
    source = warehouse or settings.build_db
    marts = read_marts(source)
    rows = labelled_features(marts, read_transitions(source), registry, every_days, horizon_days)
    split = time_split(rows, holdout_days, horizon_days)
    model = train(split.train, seed=seed)
    held_out = _scored(model, split.test).rename({LABEL: "outcome"})
    measured = {"labels": "marts", **metrics(held_out, "outcome")}
    card = model_card(model, split.test_window, [s.name for s in available_sets(marts)], measured, registry)
    card.update(every_days=every_days, holdout_days=holdout_days, horizon_days=horizon_days)
    card["target"] = f"the customer's state becomes churned within {horizon_days} days after the scoring date"
    folder = artefacts.save(settings.churn_models_dir, model, measured, card)
    return Retrained(model=model, folder=folder, metrics=measured, card=card)


def _scored(model: ChurnModel, rows: pl.DataFrame) -> pl.DataFrame:
    scores = model.score(rows)
    return scores.with_columns(baseline=baseline(rows), **{LABEL: rows[LABEL]} if LABEL in rows.columns else {})


def model_card(
    model: ChurnModel,
    test_window: tuple[dt.date, dt.date],
    feature_sets: list[str],
    measured: dict[str, Any],
    registry: Registry,
) -> dict[str, Any]:
    return {
        "model": "customer_churn_risk",
        "version": model.version,
        "owner": domain_owners().get(OWNER_DOMAIN, ""),
        "intended_use": INTENDED_USE,
        "population": "customers (ultimate parents) with a contract live or paused on the scoring date",
        "training_window": [model.train_window[0].isoformat(), model.train_window[1].isoformat()],
        "test_window": [test_window[0].isoformat(), test_window[1].isoformat()],
        "feature_sets": feature_sets,
        "features": model.features,
        "baseline": "delinquent (an invoice open more than "
        f"{registry.delinquency_days} days past due) or a cancellation requested",
        "algorithm": model.params,
        "seed": model.seed,
        "metrics": measured,
    }


def evaluate(
    settings: Settings,
    registry: Registry,
    truth: pl.DataFrame,
    warehouse: Path | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """A version's held-out dates scored again and measured against the given outcomes.

    ``truth`` holds ``customer_id``, ``date`` and the boolean ``truth`` (churned within the version's
    horizon, null where unknown): the simulator's, in the data scientists' loop.
    """
    root = settings.churn_models_dir
    model = artefacts.load(root, version)
    card = artefacts.read_json(root, artefacts.CARD_FILE, model.version)
    start, end = (dt.date.fromisoformat(d) for d in card["test_window"])
    marts = read_marts(warehouse or settings.build_db)
    days = [d for d in scoring_dates(start, history_bounds(marts)[1], int(card["every_days"])) if d <= end]
    rows = build_features(marts, days, registry.delinquency_days)
    scored = against_truth(_scored(model, rows), truth)
    missing = scored.filter(pl.col("truth").is_null()).height
    measured = {"labels": "simulator truth", "rows_without_truth": missing, **metrics(scored, "truth")}
    measured["version"] = model.version
    artefacts.write_beside(root, model.version, EVALUATION_FILE, measured)
    return measured


@dataclass(frozen=True)
class Scored:
    day: dt.date
    version: str | None  # None: no model trained yet, nothing scored
    customers: int
    bands: dict[str, int]


def score_and_store(
    settings: Settings, registry: Registry, rules: ChurnRiskRules, day: dt.date, limits: Limits | None = None
) -> Scored:
    """Score the day with the current model and write its scores and feature drift to the build warehouse.

    With no model trained yet, the tables exist and the day holds no scores (the gate has nothing to judge).
    """
    try:
        model = artefacts.load(settings.churn_models_dir)
    except artefacts.NoModel:
        with connect(settings.build_db, limits=limits) as conn:
            scores.ensure_tables(conn)
        return Scored(day, None, 0, {})
    features = features_on(read_marts(settings.build_db), day, registry.delinquency_days)
    risk = scores.banded(model.score(features), rules)
    drift = scores.feature_drift(model, features, day)
    with connect(settings.build_db, limits=limits) as conn:
        scores.store(conn, day, risk, drift)
    counts = dict(risk.group_by("risk_band").len().iter_rows())
    return Scored(day, model.version, risk.height, {str(k): int(v) for k, v in counts.items()})

"""The daily scores in the build warehouse, and what publishing says about them.

``marts.customer_churn_risk`` holds, per customer and scoring date, the probability of churning within 90
days, its band (registry/churn_risk.yaml), the top reasons and the model version. Beside it, in the
unpublished ``models`` schema, ``models.churn_feature_drift`` holds how far each feature's mean on the
scoring date moved from the training data's, in training standard deviations: the gate blocks publishing
on it (quality/churn.py). A date is written in one transaction, replacing what an earlier run wrote for it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from dataops.core.warehouse import transaction
from dataops.governance.metadata import ColumnMeta, DatasetMeta
from dataops.models import artefacts
from dataops.models.churn import ChurnModel
from registry.churn_risk import ChurnRiskRules

RISK_TABLE = "marts.customer_churn_risk"
DRIFT_TABLE = "models.churn_feature_drift"
DDL = """
create schema if not exists marts;
create schema if not exists models;
create table if not exists marts.customer_churn_risk (
    customer_id varchar not null, score_date date not null, churn_probability double, risk_band varchar,
    top_reasons varchar, model_version varchar not null);
create table if not exists models.churn_feature_drift (
    score_date date not null, feature varchar not null, model_version varchar not null,
    customers integer not null, mean_shift_sd double);
"""
COLUMNS = {
    "customer_id": ("varchar", "The customer (ultimate parent) scored."),
    "score_date": ("date", "The business date scored: features use only what was known by its end."),
    "churn_probability": ("double", "Probability that the customer churns within the 90 days after score_date."),
    "risk_band": ("varchar", "The band of the probability (registry/churn_risk.yaml): high, medium or low."),
    "top_reasons": ("varchar", "Up to three features that raise this customer's score the most, highest first."),
    "model_version": ("varchar", "The model that scored it: its card is catalog.model_cards."),
}


def dataset_meta(owner: str) -> DatasetMeta:
    """How the catalog describes the scores (they are written by the scoring step, not by dbt)."""
    return DatasetMeta(
        RISK_TABLE,
        "Each live or paused customer's risk of churning within 90 days, scored daily, with its band and reasons.",
        {
            "owner": owner,
            "domain": "customer",
            "grain": "one row per customer and score_date",
            "key": ["customer_id", "score_date"],
            "sort_order": ["score_date", "customer_id"],
            "retention_days": 730,
            "classification": "internal",
            "refresh_schedule": "daily, after the marts; the model is retrained monthly",
        },
        [ColumnMeta(name, description, data_type, False) for name, (data_type, description) in COLUMNS.items()],
        upstream=[
            "marts.fct_customer_states_daily",
            "marts.fct_contracts",
            "marts.fct_contract_state_events",
            "marts.fct_invoices",
            "marts.fct_payments",
            "marts.fct_credit_memos",
            "marts.fct_opportunities",
        ],
    )


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(DDL)


def banded(scores: pl.DataFrame, rules: ChurnRiskRules) -> pl.DataFrame:
    """The model's scores as the table holds them, with the registry's band."""
    band = pl.lit(rules.bands[-1].name)
    for b in reversed(rules.bands[:-1]):
        band = pl.when(pl.col("probability") >= b.at_least).then(pl.lit(b.name)).otherwise(band)
    return scores.select(
        "customer_id",
        pl.col("date").alias("score_date"),
        pl.col("probability").alias("churn_probability"),
        pl.when(pl.col("probability").is_not_null()).then(band).alias("risk_band"),
        "top_reasons",
        "model_version",
    )


def feature_drift(model: ChurnModel, features: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Per feature, the scored customers' mean in the training data's standard deviations (0 = unchanged)."""
    schema = {
        "score_date": pl.Date,
        "feature": pl.String,
        "model_version": pl.String,
        "customers": pl.Int32,
        "mean_shift_sd": pl.Float64,
    }
    if features.is_empty():
        return pl.DataFrame(schema=schema)
    z = model.pipeline[:-1].transform(model.matrix(features))
    return pl.DataFrame(
        {
            "score_date": [day] * len(model.features),
            "feature": model.features,
            "model_version": [model.version] * len(model.features),
            "customers": [features.height] * len(model.features),
            "mean_shift_sd": np.asarray(z).mean(axis=0).tolist(),
        },
        schema=schema,
    )


def store(conn: duckdb.DuckDBPyConnection, day: dt.date, risk: pl.DataFrame, drift: pl.DataFrame) -> None:
    """Replace the date's scores and drift in one transaction."""
    ensure_tables(conn)
    with transaction(conn):
        conn.execute(f"delete from {RISK_TABLE} where score_date = ?", [day])
        conn.execute(f"delete from {DRIFT_TABLE} where score_date = ?", [day])
        conn.register("_risk", risk)
        conn.register("_drift", drift)
        conn.execute(f"insert into {RISK_TABLE} by name select * from _risk")
        conn.execute(f"insert into {DRIFT_TABLE} by name select * from _drift")
        conn.unregister("_risk")
        conn.unregister("_drift")


def model_cards(root: Path) -> pl.DataFrame:
    """Every stored version's card, for the catalog (``catalog.model_cards``); the current one flagged."""
    schema = {
        "model": pl.String,
        "version": pl.String,
        "is_current": pl.Boolean,
        "owner": pl.String,
        "intended_use": pl.String,
        "training_start": pl.Date,
        "training_end": pl.Date,
        "test_start": pl.Date,
        "test_end": pl.Date,
        "features": pl.String,
        "metrics": pl.String,
        "card": pl.String,
    }
    if not root.exists():
        return pl.DataFrame(schema=schema)
    try:
        current = artefacts.current_version(root)
    except artefacts.NoModel:
        current = None
    rows: list[dict[str, Any]] = []
    for card_file in sorted(root.glob(f"*/{artefacts.CARD_FILE}")):
        card = json.loads(card_file.read_text())
        rows.append(
            {
                "model": card["model"],
                "version": card["version"],
                "is_current": card["version"] == current,
                "owner": card["owner"],
                "intended_use": card["intended_use"],
                "training_start": dt.date.fromisoformat(card["training_window"][0]),
                "training_end": dt.date.fromisoformat(card["training_window"][1]),
                "test_start": dt.date.fromisoformat(card["test_window"][0]),
                "test_end": dt.date.fromisoformat(card["test_window"][1]),
                "features": json.dumps(card["features"]),
                "metrics": json.dumps(card["metrics"], sort_keys=True),
                "card": json.dumps(card, sort_keys=True),
            }
        )
    return pl.DataFrame(rows, schema=schema)

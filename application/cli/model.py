"""``dataops model train|evaluate``: the data scientists' loop for the churn-risk model, without a notebook.

``train`` fits on the build warehouse's history and stores the version beside its metrics (the same
function the monthly retrain asset calls); ``evaluate`` scores that version's held-out months again and
measures them against the simulator's truth (who really churned within 90 days). Both are deterministic
given the seed and the data (docs/churn-model.md).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from application.cli.common import console, fail, settings

model_app = typer.Typer(
    help="The churn-risk model: retrain and compare against the simulator's truth.", no_args_is_help=True
)
TRUTH_FILE = "customer_latent_health.parquet"

Seed = Annotated[int, typer.Option(help="Random seed of the model.")]
Holdout = Annotated[int, typer.Option(help="Days of labelled history held out for measuring.")]
Every = Annotated[int, typer.Option(help="Days between training dates.")]


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


def _train(seed: int, holdout_days: int, every_days: int) -> dict[str, Any]:
    from dataops.models.churn import TrainingError
    from dataops.models.workflow import retrain
    from registry.loader import load_registry

    try:
        done = retrain(settings(), load_registry(), seed=seed, holdout_days=holdout_days, every_days=every_days)
    except (TrainingError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"trained {done.model.version} on {done.card['training_window'][0]}..{done.card['training_window'][1]}"
    )
    console.print(f"stored in {done.folder}")
    return done.metrics


@model_app.command("train")
def train(
    seed: Seed = 29,
    holdout_days: Holdout = 182,
    every_days: Every = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the held-out metrics as JSON.")] = False,
) -> None:
    """Retrain on the build warehouse's history; held-out metrics against the marts' own labels."""
    measured = _train(seed, holdout_days, every_days)
    _print(measured, as_json, "held-out months, the marts' labels")


@model_app.command("evaluate")
def evaluate(
    version: Annotated[str | None, typer.Option(help="The version to evaluate (default: the current one).")] = None,
    retrain: Annotated[bool, typer.Option(help="Train first (with --seed, --holdout-days, --every-days).")] = False,
    seed: Seed = 29,
    holdout_days: Holdout = 182,
    every_days: Every = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Score a version's held-out months again and measure them against the simulator's truth."""
    import polars as pl

    from dataops.models.artefacts import NoModel
    from dataops.models.workflow import evaluate as measure
    from registry.loader import load_registry

    paths = settings()
    truth_file = paths.truth_dir / TRUTH_FILE
    if not truth_file.exists():
        raise fail(f"no simulator truth at {truth_file}: evaluate needs a simulated enterprise (dataops simulate)")
    if retrain:
        _train(seed, holdout_days, every_days)
    try:
        measured = measure(paths, load_registry(), pl.read_parquet(truth_file), version=version)
    except NoModel as exc:
        raise fail(str(exc)) from None
    _print(measured, as_json, "held-out months, the simulator's truth")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _print(measured: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        console.print_json(json.dumps(measured, default=str))
        return
    console.print(
        f"{title}: {measured.get('rows')} scores of {measured.get('customers')} customers on "
        f"{measured.get('dates')} dates, {measured.get('churners')} churned within 90 days "
        f"(base rate {_fmt(measured.get('base_rate'))})"
    )
    if "model" not in measured:
        return
    table = Table("metric", "model", "baseline")
    model, base = measured["model"], measured["baseline"]
    table.add_row("ROC AUC", _fmt(model["roc_auc"]), _fmt(base["roc_auc"]))
    table.add_row("precision at top 10%", _fmt(model["precision_at_top_10pct"]), _fmt(base["precision_at_top_10pct"]))
    table.add_row("Brier score", _fmt(model["brier"]), "")
    table.add_row("expected calibration error", _fmt(model["expected_calibration_error"]), "")
    table.add_row(
        "flagged share / precision", "", f"{_fmt(base['flagged_share'])} / {_fmt(base['precision_of_flagged'])}"
    )
    console.print(table)
    lift = measured["lift_over_baseline"]
    console.print(
        f"lift over the baseline: ROC AUC +{_fmt(lift['roc_auc_margin'])}, "
        f"precision at top 10% x{_fmt(lift['precision_at_top_10pct_ratio'])}"
    )

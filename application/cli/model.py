"""``dataops model train|evaluate``: the data scientists' loop for the churn-risk model, without a notebook.

``train`` fits on the build warehouse's history and stores the version beside its metrics (the same
function the monthly retrain asset calls); ``evaluate`` scores that version's held-out months again and
measures them against the simulator's truth (who really churned within 90 days). Both are deterministic
given the seed and the data (docs/churn-model.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from application.cli.common import console, fail, settings

if TYPE_CHECKING:  # polars only when a model command runs: `dataops status` must not load it
    import polars as pl

model_app = typer.Typer(
    help="The churn-risk model: retrain and compare against the simulator's truth.", no_args_is_help=True
)
LATENT_FILE = "customer_latent_health.parquet"  # the simulator's own 90-day label
STATES_FILE = "customer_states_daily.parquet"  # its customer states, for any other horizon

Seed = Annotated[int, typer.Option(help="Random seed of the model.")]
Holdout = Annotated[int, typer.Option(help="Days of labelled history held out for measuring.")]
Every = Annotated[int, typer.Option(help="Days between training dates.")]
Horizon = Annotated[int, typer.Option(help="Days ahead the label looks (90; shorter only for a tiny simulation).")]


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


def truth_outcomes(truth_dir: Path, horizon_days: int) -> pl.DataFrame:
    """The simulator's answer per customer and date: churned within the horizon (null where not simulated).

    The 90-day horizon is the simulator's own label; another (a tiny simulation's) is read off its states.
    """
    import polars as pl

    from dataops.models.labels import HORIZON_DAYS

    latent = pl.read_parquet(truth_dir / LATENT_FILE).rename({"customer_key": "customer_id"})
    if horizon_days == HORIZON_DAYS:
        return latent.select("customer_id", "date", pl.col("churns_within_90_days").alias("truth"))
    states = pl.read_parquet(truth_dir / STATES_FILE).rename({"customer_key": "customer_id"}).sort("date")
    churns = (
        states.with_columns(was=pl.col("state").shift(1).over("customer_id"))
        .filter((pl.col("state") == "churned") & (pl.col("was") != "churned"))
        .select("customer_id", pl.col("date").alias("churned_on"))
    )
    last = states["date"].max()
    rows = latent.select("customer_id", "date")
    hits = (
        rows.join(churns, on="customer_id")
        .filter(
            (pl.col("churned_on") > pl.col("date"))
            & (pl.col("churned_on") <= pl.col("date") + pl.duration(days=horizon_days))
        )
        .select("customer_id", "date")
        .unique()
        .with_columns(hit=pl.lit(True))
    )
    known = pl.col("date") + pl.duration(days=horizon_days) <= pl.lit(last)
    return rows.join(hits, on=["customer_id", "date"], how="left").select(
        "customer_id",
        "date",
        pl.when(known | pl.col("hit").is_not_null()).then(pl.col("hit").fill_null(False)).alias("truth"),
    )


def _train(seed: int, holdout_days: int, every_days: int, horizon_days: int) -> dict[str, Any]:
    from dataops.models.churn import TrainingError
    from dataops.models.workflow import retrain
    from registry.loader import load_registry

    try:
        done = retrain(
            settings(),
            load_registry(),
            seed=seed,
            holdout_days=holdout_days,
            every_days=every_days,
            horizon_days=horizon_days,
        )
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
    horizon_days: Horizon = 90,
    as_json: Annotated[bool, typer.Option("--json", help="Print the held-out metrics as JSON.")] = False,
) -> None:
    """Retrain on the build warehouse's history; held-out metrics against the marts' own labels."""
    measured = _train(seed, holdout_days, every_days, horizon_days)
    _print(measured, as_json, "held-out months, the marts' labels")


@model_app.command("evaluate")
def evaluate(
    version: Annotated[str | None, typer.Option(help="The version to evaluate (default: the current one).")] = None,
    retrain: Annotated[bool, typer.Option(help="Train first (with --seed, --holdout-days, --every-days).")] = False,
    seed: Seed = 29,
    holdout_days: Holdout = 182,
    every_days: Every = 7,
    horizon_days: Horizon = 90,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Score a version's held-out months again and measure them against the simulator's truth."""
    from dataops.models.artefacts import CARD_FILE, NoModel, read_json
    from dataops.models.workflow import evaluate as measure
    from registry.loader import load_registry

    paths = settings()
    if not (paths.truth_dir / LATENT_FILE).exists():
        raise fail(f"no simulator truth under {paths.truth_dir}: evaluate needs a simulated enterprise")
    if retrain:
        _train(seed, holdout_days, every_days, horizon_days)
    try:
        card = read_json(paths.churn_models_dir, CARD_FILE, version)
        truth = truth_outcomes(paths.truth_dir, int(card["horizon_days"]))
        measured = measure(paths, load_registry(), truth, version=version)
    except NoModel as exc:
        raise fail(str(exc)) from None
    _print(measured, as_json, "held-out months, the simulator's truth")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _print(measured: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        console.print_json(json.dumps(measured, default=str))
        return
    console.print(
        f"{title}: {measured.get('rows')} scores of {measured.get('customers')} customers on "
        f"{measured.get('dates')} dates, {measured.get('churners')} churned within the horizon "
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
        f"lift over the baseline: ROC AUC {_signed(lift['roc_auc_margin'])}, "
        f"precision at top 10% x{_fmt(lift['precision_at_top_10pct_ratio'])}"
    )

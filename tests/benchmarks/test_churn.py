"""The churn figures' command on the tiny simulation: one pass builds the marts and the usage the features read,
and the held-out scores are measured against the simulator's truth (no model quality is asserted)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from application.cli.model import truth_outcomes
from benchmarks import churn
from dataops.core.settings import Settings
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import SimulationError
from tests.conftest import TINY_DAYS, TINY_START

# the tiny simulation (with the product's events) landed, ingested and built in one pass, then trained
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("tiny")]

# The tiny window cannot hold the 90-day label: this exercises the loop, not the model. Its two churns fall
# one in the training dates and one in the held-out ones with these.
HORIZON, HOLDOUT = 14, 29


def test_one_command_builds_trains_and_measures_against_the_truth(
    tmp_path: Path, tiny_sources: Path, tiny_config: SimConfig
) -> None:
    (tmp_path / "sources").symlink_to(tiny_sources)
    end = TINY_START + dt.timedelta(days=TINY_DAYS - 1)
    options = churn.Options(
        tiny_config.scale,
        TINY_START,
        end,
        tiny_config.seed,
        holdout_days=HOLDOUT,
        every_days=7,
        horizon_days=HORIZON,
        event_batch_days=TINY_DAYS,
    )
    report = churn.reproduce(tmp_path, options, tiny_config)

    assert report["events"]["landed"] > 0 and report["rows_loaded"]["accounting.invoices"] > 0
    assert "usage" in report["feature_sets"]  # usage trend and breadth came from the event stream
    measured = report["against_truth"]
    assert measured["labels"] == "simulator truth" and measured["rows_without_truth"] == 0
    for name in ("model", "baseline"):
        assert 0.0 <= measured[name]["precision_at_top_10pct"] <= 1.0
    assert {"roc_auc", "brier", "expected_calibration_error", "bins"} <= set(measured["model"])
    assert set(measured["lift_over_baseline"]) == {"roc_auc_margin", "precision_at_top_10pct_ratio"}

    # measured against the truth: the held-out customers and dates the warehouse scores, with the truth's outcome
    settings = Settings(tmp_path)
    first, last = (dt.date.fromisoformat(d) for d in report["test_window"])
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        scored = conn.sql(
            "select customer_id, date_day as date from marts.fct_customer_states_daily "
            "where state in ('active', 'paused') and date_day between ? and ?",
            params=[first, last],
        ).pl()
    dates = pl.date_range(first, last, "7d", eager=True).implode()
    outcomes = scored.filter(pl.col("date").is_in(dates)).join(
        truth_outcomes(settings.truth_dir, HORIZON), on=["customer_id", "date"]
    )
    assert (measured["rows"], measured["churners"]) == (outcomes.height, outcomes["truth"].sum()) != (0, 0)
    assert measured["churners"] > 0 and measured["model"]["roc_auc"] is not None

    path = churn.write(report, tmp_path / "results")
    assert path.name.endswith("-churn-SF0.05.md") and "precision at top 10%" in path.read_text()
    assert json.loads(path.with_suffix(".json").read_text())["command"].startswith("python -m benchmarks.churn")


def test_a_window_ending_before_the_simulation_is_refused(tmp_path: Path, tiny_sources: Path) -> None:
    """The ERP and CRM hold current state: a window cut out of a longer simulation would lose rows changed later."""
    (tmp_path / "sources").symlink_to(tiny_sources)
    options = churn.Options(0.05, TINY_START, TINY_START + dt.timedelta(days=TINY_DAYS - 10), 7)
    with pytest.raises(SimulationError, match="past --end"):
        churn.reproduce(tmp_path, options)
    assert not Settings(tmp_path).build_db.exists()

"""The churn model in Dagster, end to end on a tiny simulation: retrain, score, gate, publish with its card.

The simulation is 150 days, too short for the 90-day label: the retrain here uses a 21-day horizon, which
exercises every step without saying anything about the model's quality (docs/churn-model.md measures that).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from dataops.core.settings import Settings
from dataops.egress.reverse_etl import CHURN_REASONS_FIELD, CHURN_RISK_FIELD, enterprise_view
from dataops.models import artefacts
from orchestration.definitions import defs
from orchestration.lib.names import ANALYTICS_KEY, CHURN_MODEL_KEY, CHURN_RETRAIN_JOB, CHURN_RISK_KEY
from tests.conftest import BUILT_DAYS, BUILT_START
from tests.pipeline import environment, run_job

pytestmark = pytest.mark.xdist_group("built")

END = BUILT_START + dt.timedelta(days=BUILT_DAYS - 1)
SHORT = {"ops": {"models__churn_model": {"config": {"horizon_days": 21, "holdout_days": 28, "every_days": 7}}}}
SCORE_AND_PUBLISH = dg.AssetSelection.assets(CHURN_RISK_KEY, ANALYTICS_KEY)


def retrain(root: Path) -> dg.ExecuteInProcessResult:
    with environment(DATAOPS_DATA_DIR=str(root)), dg.DagsterInstance.ephemeral() as instance:
        return defs().resolve_job_def(CHURN_RETRAIN_JOB).execute_in_process(run_config=SHORT, instance=instance)


@pytest.fixture(scope="module")
def trained(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("churn")
    shutil.copytree(built, root, dirs_exist_ok=True)
    assert retrain(root).success
    return root


def test_the_assets_are_grouped_owned_and_described() -> None:
    with environment(DATAOPS_START_DATE="2025-01-01"):
        graph = defs().resolve_asset_graph()
    for key in (CHURN_MODEL_KEY, CHURN_RISK_KEY):
        node = graph.get(key)
        assert node.group_name == "churn_model" and node.owners == ["team:sales-ops"]
        assert "scikit-learn" in node.kinds and node.description
    assert CHURN_RISK_KEY in graph.get(ANALYTICS_KEY).parent_keys  # its blocking checks stop publishing
    build = defs().resolve_job_def("build_job")  # scored in the build after each landing
    assert CHURN_RISK_KEY in build.asset_layer.executable_asset_keys
    assert CHURN_MODEL_KEY not in build.asset_layer.executable_asset_keys  # retrained monthly, by its own job
    schedule = defs().resolve_schedule_def("churn_retrain_schedule")
    assert schedule.job_name == CHURN_RETRAIN_JOB and schedule.cron_schedule == "0 4 3 * *"
    tick = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2025, 3, 3, 4, tzinfo=dt.UTC))
    assert [r.run_key for r in schedule.evaluate_tick(tick).run_requests or []] == ["churn-retrain-2025-03"]
    steps = [node.name for node in build.graph.nodes]
    assert steps.count("enterprise_model") == 1 and "enterprise_model_2" not in steps  # dbt stays one step


def test_retrain_stores_a_version_beside_its_metrics_and_card(trained: Path) -> None:
    root = Settings(trained).churn_models_dir
    card = artefacts.read_json(root, artefacts.CARD_FILE)
    assert card["version"] == artefacts.current_version(root)
    assert card["owner"] == "sales-ops" and card["intended_use"] and card["horizon_days"] == 21
    assert dt.date.fromisoformat(card["training_window"][1]) < dt.date.fromisoformat(card["test_window"][0])
    assert "delinquent" in card["features"] and card["metrics"] == artefacts.read_json(root, artefacts.METRICS_FILE)


def test_the_scores_are_published_with_the_model_card_in_the_catalog(trained: Path) -> None:
    result = run_job(trained, END, END, selection=SCORE_AND_PUBLISH)
    assert result.success
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert {k: v for k, v in checks.items() if k.startswith("churn_")} == {
        "churn_scores_not_degenerate": True,
        "churn_features_not_drifted": True,
    }
    version = artefacts.current_version(Settings(trained).churn_models_dir)
    with duckdb.connect(str(Settings(trained).analytics_db), read_only=True) as conn:
        scores = conn.execute(
            "select score_date, count(*), count(distinct churn_probability), min(model_version), "
            "count(*) filter (where risk_band is null) from marts.customer_churn_risk group by 1"
        ).fetchall()
        card = conn.execute("select version, is_current, owner from catalog.model_cards").fetchall()
        listed = conn.execute(
            "select owner from catalog.datasets where dataset = 'marts.customer_churn_risk'"
        ).fetchall()
    [(day, rows, distinct, scored_by, unbanded)] = scores
    assert day == END and rows > 10 and distinct > 1 and scored_by == version and unbanded == 0
    assert card == [(version, True, "sales-ops")] and listed == [("sales-ops",)]
    # the reverse ETL writes each scored account's band and reasons beside its state
    view = enterprise_view(Settings(trained))
    banded = [v for v in view.values.values() if CHURN_RISK_FIELD in v]
    assert banded and {v[CHURN_RISK_FIELD] for v in banded} <= {"high", "medium", "low"}
    assert all(CHURN_REASONS_FIELD in v for v in banded)


def test_degenerate_scores_block_publishing(trained: Path, tmp_path: Path) -> None:
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    models = Settings(tmp_path).churn_models_dir
    model = artefacts.load(models)
    model.pipeline[-1].coef_ = np.zeros_like(model.pipeline[-1].coef_)  # every customer the same probability
    model.version += "-flat"
    artefacts.save(models, model, {}, {**artefacts.read_json(models, artefacts.CARD_FILE), "version": model.version})
    before = Settings(tmp_path).analytics_db.stat().st_mtime_ns

    result = run_job(tmp_path, END, END, selection=SCORE_AND_PUBLISH)
    assert not result.success
    failed = [e.asset_check_key.name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == ["churn_scores_not_degenerate"]
    assert not [e for e in result.get_asset_materialization_events() if e.asset_key == ANALYTICS_KEY]
    assert Settings(tmp_path).analytics_db.stat().st_mtime_ns == before


def test_the_cli_retrains_deterministically_and_evaluates_against_the_truth(trained: Path, tmp_path: Path) -> None:
    """``dataops model train`` twice gives the same version and scores; ``evaluate`` reads the truth."""
    from typer.testing import CliRunner

    from application.cli import app

    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    shutil.rmtree(Settings(tmp_path).churn_models_dir)
    runner = CliRunner(env={"DATAOPS_DATA_DIR": str(tmp_path), "COLUMNS": "200"})
    args = ["model", "train", "--horizon-days", "21", "--holdout-days", "28", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    version = artefacts.current_version(Settings(tmp_path).churn_models_dir)
    model = artefacts.load(Settings(tmp_path).churn_models_dir)
    again = runner.invoke(app, [*args[:-1], "--seed", "29"])
    assert again.exit_code == 0 and f"trained {version}" in again.output
    assert artefacts.load(Settings(tmp_path).churn_models_dir).pipeline[-1].coef_.tolist() == (
        model.pipeline[-1].coef_.tolist()
    )
    measured = runner.invoke(app, ["model", "evaluate", "--json"])
    assert measured.exit_code == 0, measured.output
    evaluation = artefacts.read_json(Settings(tmp_path).churn_models_dir, "evaluation.json")
    assert evaluation["labels"] == "simulator truth" and evaluation["version"] == version
    assert evaluation["rows"] > 0 and evaluation["rows_without_truth"] < evaluation["rows"]

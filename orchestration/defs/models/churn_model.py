"""The churn-risk model: retrained monthly by its own job, scored every day after the marts.

Scores go through the gate like every dataset (quality/churn.py: degenerate scores or drifted features
block publishing) and are published with the marts; the model card goes to the catalog.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import dagster as dg

from orchestration.lib.names import CHURN_MODEL_KEY, CHURN_RETRAIN_JOB, CHURN_RISK_KEY, WAREHOUSE_POOL, WRITES_TAG
from orchestration.lib.resources import PlatformResource
from registry.loader import domain_owners

GROUP = "churn_model"
MONTHLY_CRON = "0 4 3 * *"  # the 3rd of each month, 04:00 UTC: after the night's run has published
# The marts and usage tables the features and labels read (dataops/models/features.py).
MART_KEYS = [
    dg.AssetKey(["marts", name])
    for name in (
        "fct_customer_states_daily",
        "fct_customer_state_events",
        "fct_contracts",
        "fct_contract_state_events",
        "fct_invoices",
        "fct_payments",
        "fct_credit_memos",
        "fct_opportunities",
        "fct_fx_rates",
    )
] + [dg.AssetKey(["intermediate", name]) for name in ("int_usage_known_daily", "int_usage_seat_changes_daily")]


def _owner() -> str:
    return f"team:{domain_owners().get('customer', 'sales-ops')}"


class RetrainConfig(dg.Config):
    """The seed, the held-out days, the spacing of training dates and the label's horizon (90 days; shorter
    only to exercise the loop on a tiny simulation) (dataops/models/workflow.py)."""

    seed: int = 29
    holdout_days: int = 182
    every_days: int = 7
    horizon_days: int = 90


@dg.definitions
def churn_model() -> dg.Definitions:
    @dg.asset(
        key=CHURN_MODEL_KEY,
        description="The churn-risk model, retrained on the marts' history and stored beside its metrics and card.",
        group_name=GROUP,
        kinds={"scikit-learn", "python"},
        owners=[_owner()],
        deps=MART_KEYS,
        pool=WAREHOUSE_POOL,
    )
    def churn_model_asset(
        context: dg.AssetExecutionContext, platform: PlatformResource, config: RetrainConfig
    ) -> dg.MaterializeResult:
        """Train, measure on the held-out months (marts' labels), store the version and make it current."""
        from dataops.models.workflow import retrain
        from registry.loader import load_registry

        done = retrain(
            platform.settings,
            load_registry(),
            seed=config.seed,
            holdout_days=config.holdout_days,
            every_days=config.every_days,
            horizon_days=config.horizon_days,
        )
        model = done.metrics.get("model", {})
        context.log.info(f"trained {done.model.version}: held-out ROC AUC {model.get('roc_auc')}")
        return dg.MaterializeResult(
            metadata={
                "version": done.model.version,
                "path": dg.MetadataValue.path(str(done.folder)),
                "training_window": " to ".join(d.isoformat() for d in done.model.train_window),
                "test_window": " to ".join(done.card["test_window"]),
                "roc_auc": model.get("roc_auc"),
                "precision_at_top_10pct": model.get("precision_at_top_10pct"),
                "baseline_roc_auc": done.metrics.get("baseline", {}).get("roc_auc"),
                "card": dg.MetadataValue.json(done.card),
            }
        )

    @dg.asset(
        key=CHURN_RISK_KEY,
        description="Each live or paused customer's 90-day churn risk on the build's last date, banded, with reasons.",
        group_name=GROUP,
        kinds={"scikit-learn", "duckdb"},
        owners=[_owner()],
        deps=[*MART_KEYS, CHURN_MODEL_KEY],
        pool=WAREHOUSE_POOL,
    )
    def customer_churn_risk(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        """Score the build's last business date with the current model (nothing before a model exists)."""
        from dataops.core.warehouse import connect
        from dataops.models.workflow import score_and_store
        from dataops.transform.build_stamp import build_window
        from registry.churn_risk import load_churn_risk
        from registry.loader import load_registry

        with connect(platform.settings.build_db, read_only=True, limits=platform.limits) as conn:
            built = build_window(conn)
            end = built[1] if built else conn.execute("select max(date_day) from marts.dim_dates").fetchone()[0]  # type: ignore[index]
        done = score_and_store(platform.settings, load_registry(), load_churn_risk(), end, platform.limits)
        if done.version is None:
            context.log.info(f"no churn model trained yet: nothing scored for {end} (run {CHURN_RETRAIN_JOB})")
        return dg.MaterializeResult(
            metadata={
                "score_date": end.isoformat(),
                "model_version": done.version or "none",
                "customers_scored": done.customers,
                "bands": dg.MetadataValue.json(done.bands),
            }
        )

    retrain_job = dg.define_asset_job(
        CHURN_RETRAIN_JOB,
        selection=dg.AssetSelection.assets(CHURN_MODEL_KEY),
        tags=WRITES_TAG,
        description="Retrain the churn-risk model on the marts' history (monthly, or by hand).",
    )

    @dg.schedule(
        cron_schedule=MONTHLY_CRON,
        job=retrain_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Retrain the churn-risk model once a month.",
    )
    def churn_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        scheduled = context.scheduled_execution_time
        return dg.RunRequest(run_key=f"churn-retrain-{scheduled:%Y-%m}" if scheduled else None)

    return dg.Definitions(
        assets=[churn_model_asset, customer_churn_risk], jobs=[retrain_job], schedules=[churn_retrain_schedule]
    )

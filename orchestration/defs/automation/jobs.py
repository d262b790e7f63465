"""The platform's jobs. Runs that write the build warehouse are serialised by the instance (one run at a time
from the queue, one step at a time in the ``build_warehouse`` pool: application/runs.py writes dagster.yaml)."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.names import CHURN_MODEL_KEY, WRITES_TAG

DAILY_JOB = "daily_elt_job"
ACCOUNTING_JOB = "accounting_refresh_job"


@dg.definitions
def jobs() -> dg.Definitions:
    # the churn model is retrained by its own monthly job (orchestration/defs/models), not every day
    everything = dg.AssetSelection.all() - dg.AssetSelection.assets(CHURN_MODEL_KEY)
    return dg.Definitions(
        jobs=[
            dg.define_asset_job(
                DAILY_JOB,
                selection=everything,
                tags=WRITES_TAG,
                description="One business date (or a range, as one run): every source, dbt, the gate, publishing.",
            ),
            dg.define_asset_job(
                "full_rebuild_job",
                selection=everything,
                tags=WRITES_TAG,
                config={"ops": {"enterprise_model": {"config": {"full_refresh": True}}}},
                description="Everything over the partitions launched, with the dbt models rebuilt from scratch.",
            ),
            dg.define_asset_job(
                ACCOUNTING_JOB,
                selection=dg.AssetSelection.groups("accounting").downstream()
                - dg.AssetSelection.assets(CHURN_MODEL_KEY),
                tags=WRITES_TAG,
                description="A day's accounting export (or its corrected re-export) and what depends on it.",
            ),
        ]
    )

"""The platform's jobs: a landing job (partitioned: a business date or a range) and the build job that follows
it (docs/decisions/0035). Runs that write the build warehouse are serialised by the instance (one run at a time
from the queue, one step at a time in the ``build_warehouse`` pool: application/runs.py writes dagster.yaml)."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.names import CHURN_MODEL_KEY, EVENTS_KEY, EXTRACTS_KEY, WRITES_TAG

DAILY_JOB = "daily_elt_job"
BUILD_JOB = "build_job"
FULL_REBUILD_JOB = "full_rebuild_job"
ACCOUNTING_JOB = "accounting_refresh_job"


def build_selection() -> dg.AssetSelection:
    """Everything but the landing: the loads, dbt, the churn scores, the gate, publishing and egress. Not the
    churn model (retrained by its own monthly job, orchestration/defs/models) nor the event stream (landed by
    its own sensor's micro-batches, orchestration/defs/product)."""
    return dg.AssetSelection.all() - dg.AssetSelection.assets(EXTRACTS_KEY, CHURN_MODEL_KEY, EVENTS_KEY)


LANDING = dg.AssetSelection.assets(EXTRACTS_KEY)
DAILY = dg.define_asset_job(
    DAILY_JOB,
    selection=LANDING,
    tags=WRITES_TAG,
    description="A business date (or a range, as one run): every source's extracts landed in the lake. "
    "The build_after_landing sensor then runs build_job.",
)
BUILD = dg.define_asset_job(
    BUILD_JOB,
    selection=build_selection(),
    tags=WRITES_TAG,
    description="Everything landed and not yet loaded: the loads, dbt over their days, the gate, publishing and "
    "egress.",
)
FULL_REBUILD = dg.define_asset_job(
    FULL_REBUILD_JOB,
    selection=build_selection(),
    tags=WRITES_TAG,
    config={"ops": {"enterprise_model": {"config": {"full_refresh": True}}}},
    description="The build job with the dbt models rebuilt from scratch.",
)
ACCOUNTING = dg.define_asset_job(
    ACCOUNTING_JOB,
    selection=LANDING,
    tags=WRITES_TAG,
    config={"ops": {"lake__extracts": {"config": {"systems": ["accounting"]}}}},
    description="A day's accounting export (or its corrected re-export) landed; build_job follows.",
)


@dg.definitions
def jobs() -> dg.Definitions:
    return dg.Definitions(jobs=[DAILY, BUILD, FULL_REBUILD, ACCOUNTING])

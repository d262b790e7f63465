"""Names the code location's definitions share: owners, the writers' pool, the keys downstream steps depend on."""

from __future__ import annotations

import dagster as dg

PLATFORM_OWNER = "team:data-platform"  # the platform's own assets: ingestion, publishing, egress
# Every step that opens the build warehouse, to write or to read, is in this pool of one (docs/decisions/0005).
WAREHOUSE_POOL = "build_warehouse"
ANALYTICS_KEY = dg.AssetKey(["publish", "analytics_warehouse"])
# The one daily-partitioned asset that runs: each business date's extracts, landed in the lake (docs/decisions/0035).
EXTRACTS_KEY = dg.AssetKey(["lake", "extracts"])
# Which days are in the published KPIs, checked: a daily-partitioned status that publishing reports.
PUBLISHED_DAYS_KEY = dg.AssetKey(["publish", "published_days"])
KPI_KEYS = (dg.AssetKey(["kpis", "kpi_daily"]), dg.AssetKey(["kpis", "kpi_monthly"]))
WRITES_TAG = {"dataops/writes": "build_warehouse"}
# The churn-risk model (orchestration/defs/models): retrained monthly by its own job, scored in the daily run.
CHURN_MODEL_KEY = dg.AssetKey(["models", "churn_model"])
CHURN_RISK_KEY = dg.AssetKey(["marts", "customer_churn_risk"])
CHURN_RETRAIN_JOB = "churn_retrain_job"
# The product's event stream (orchestration/defs/product): landed by its own sensor and job, not by the build.
EVENTS_KEY = dg.AssetKey(["product", "events"])

# The build run that follows a landing run carries the landing's run and window in these tags.
AFTER_LANDING_TAG = "dataops/after_landing"
WINDOW_TAG = "dataops/window"
# A landing run that brought nothing new says so in this tag ("true"): no build follows it (docs/decisions/0057).
NOTHING_NEW_TAG = "dataops/nothing_new"

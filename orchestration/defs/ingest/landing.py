"""The landing (group `lake`): each business date's extracts of every source table, in the lake. The one
daily-partitioned asset that runs: a date, or a backfill's range, is landed here in one run, and the build
run that follows loads it (docs/decisions/0035)."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import landing_asset
from orchestration.lib.partitions import daily_partitions


@dg.definitions
def landing() -> dg.Definitions:
    return dg.Definitions(assets=[landing_asset(daily_partitions())])

"""The code location: every definition in ``orchestration/defs`` (one folder per domain), loaded by Dagster's
defs-folder loader, with the platform's freshness policy on what analysts read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from dataops.core.collector import collect_less_often
from dataops.core.settings import Settings, secure_data_dir
from orchestration.lib.names import ANALYTICS_KEY, KPI_KEYS
from registry.loader import load_registry

# the code location's processes (its code server, each run's worker) are the platform's: dataops/core/collector.py
collect_less_often()


@dg.definitions
def defs() -> dg.Definitions:
    secure_data_dir(Settings.from_env())  # what the runs write is the platform account's alone (docs/governance.md)
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    hour = load_registry().freshness_hour
    # published between midnight and the deadline every day (yesterday's run), else stale in the UI
    policy = dg.FreshnessPolicy.cron(deadline_cron=f"0 {hour} * * *", lower_bound_delta=dt.timedelta(hours=hour))
    return loaded.map_resolved_asset_specs(
        func=lambda spec: dg.apply_freshness_policy(spec, policy), selection=[*KPI_KEYS, ANALYTICS_KEY]
    )

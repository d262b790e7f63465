"""The mock systems of record, advanced by the pipeline itself when they are in use.

With no external CRM configured, each run first moves the simulated enterprise on to the run's last
business date, so a demo keeps producing new days. The pipeline reads the result only through the
systems' interfaces, like any other source.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import os

import dagster as dg

from orchestration.defs.ingest import OWNER
from orchestration.partitions import window
from orchestration.resources import PlatformResource

SIMULATION_KEY = dg.AssetKey(["simulation", "business_day"])


def mock_sources_in_use() -> bool:
    """Mock systems unless an external CRM is configured (or DATAOPS_MOCK_SOURCES=0)."""
    return not os.environ.get("CRM_BASE_URL") and os.environ.get("DATAOPS_MOCK_SOURCES", "1") != "0"


def assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=SIMULATION_KEY,
        description="The simulated enterprise (ERP, CRM, accounting) advanced to the run's last business date.",
        group_name="simulation",
        kinds={"python"},
        owners=[OWNER],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def business_day(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        from source_systems.simulator.run import simulate, simulated_through

        _, end = window(context)
        sources = platform.settings.sources_dir
        done = simulated_through(sources)
        if done is not None and done >= end:
            context.log.info(f"the sources are simulated through {done} already")
            return dg.MaterializeResult(metadata={"simulated_through": str(done), "days_simulated": 0})
        summary = simulate(sources, end)
        return dg.MaterializeResult(
            metadata={"simulated_through": str(summary.through), "days_simulated": summary.days_simulated}
        )

    return [business_day]

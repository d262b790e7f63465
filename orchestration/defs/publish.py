"""Publishing: downstream of every checked mart and KPI asset, so it runs only when every blocking check
of the run passed.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import dagster as dg

from dataops.publish import publish
from orchestration.defs.ingest import OWNER, WAREHOUSE_POOL
from orchestration.partitions import window
from orchestration.resources import PlatformResource

ANALYTICS_KEY = dg.AssetKey(["publish", "analytics_warehouse"])


def assets(partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=ANALYTICS_KEY,
        description="The read-only analyst warehouse (marts, KPIs with flash/final, KPI history and restatements), "
        "swapped in atomically after every check passed.",
        group_name="publish",
        kinds={"duckdb"},
        owners=[OWNER],
        deps=upstream,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        tags={"layer": "egress"},
    )
    def analytics_warehouse(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        start, end = window(context)
        report = publish(platform.settings, (start, end), run_id=context.run.run_id, limits=platform.limits)
        context.log.info(
            f"published {report.publish_id} as of {report.as_of}: {report.changed_values} KPI values "
            f"changed, {report.restatements} restated"
        )
        return dg.MaterializeResult(
            metadata={
                "publish_id": report.publish_id,
                "published_at": report.published_at.isoformat(),
                "as_of_date": str(report.as_of),
                "kpi_values_changed": report.changed_values,
                "restatements": report.restatements,
                "path": dg.MetadataValue.path(str(report.path)),
                "bytes": report.bytes,
                "tables": dg.MetadataValue.json(report.tables),
            }
        )

    return [analytics_warehouse]

"""Publishing: downstream of every checked mart and KPI asset, so it runs only when every blocking check
of the run passed.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

from typing import Any

import dagster as dg

from dataops.publish.analyst_warehouse import publish
from orchestration.lib.dbt import published_model_keys
from orchestration.lib.names import ANALYTICS_KEY, CHURN_RISK_KEY, PLATFORM_OWNER, WAREHOUSE_POOL
from orchestration.lib.partitions import daily_partitions, window
from orchestration.lib.resources import PlatformResource


class PublishConfig(dg.Config):
    """``republish_unchanged`` writes the analyst warehouse even when analysts already have a publish made
    from the same inputs (docs/decisions/0021), which is otherwise reported and left as it is."""

    republish_unchanged: bool = False


def analytics_warehouse_asset(
    partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey]
) -> dg.AssetsDefinition:
    @dg.asset(
        key=ANALYTICS_KEY,
        description="The read-only analyst warehouse (marts, KPIs with flash/final, KPI history and restatements), "
        "swapped in atomically after every check passed.",
        group_name="publish",
        kinds={"duckdb"},
        owners=[PLATFORM_OWNER],
        deps=upstream,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        tags={"layer": "egress"},
    )
    def analytics_warehouse(
        context: dg.AssetExecutionContext, platform: PlatformResource, config: PublishConfig
    ) -> dg.MaterializeResult:
        """The marts and KPIs written aside and swapped in, unless analysts already have them."""
        start, end = window(context)
        report = publish(
            platform.settings,
            (start, end),
            run_id=context.run.run_id,
            limits=platform.limits,
            republish_unchanged=config.republish_unchanged,
        )
        metadata: dict[str, Any] = {
            "publish_id": report.publish_id,
            "published_at": report.published_at.isoformat(),
            "as_of_date": str(report.as_of),
            "path": dg.MetadataValue.path(str(report.path)),
            "bytes": report.bytes,
        }
        if report.unchanged:
            by = f" by run {report.published_by_run}" if report.published_by_run else ""
            context.log.info(
                f"not published again: analysts have {report.publish_id} (as of {report.as_of}), published{by} "
                "from the same build, quarantine, archive log, manifest, policy, domain notes and pseudonym key; "
                "run with republish_unchanged to write it anyway"
            )
            if report.published_by_run:
                metadata["published_by_run"] = dg.MetadataValue.dagster_run(report.published_by_run)
            return dg.MaterializeResult(
                metadata={"publish": "unchanged, not published again", **metadata, "kpi_values_changed": 0}
            )
        context.log.info(
            f"published {report.publish_id} as of {report.as_of}: {report.changed_values} KPI values "
            f"changed, {report.restatements} restated"
        )
        return dg.MaterializeResult(
            metadata={
                **metadata,
                "kpi_values_changed": report.changed_values,
                "restatements": report.restatements,
                "tables": dg.MetadataValue.json(report.tables),
            }
        )

    return analytics_warehouse


@dg.definitions
def analytics_warehouse() -> dg.Definitions:
    """Downstream of every published dbt model and the churn scores (the gate's checks block through them)."""
    upstream = [*published_model_keys(), CHURN_RISK_KEY]
    return dg.Definitions(assets=[analytics_warehouse_asset(daily_partitions(), upstream)])

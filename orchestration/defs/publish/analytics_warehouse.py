"""Publishing: downstream of every checked mart and KPI asset, so it runs only when every blocking check
of the run passed. Each day a publish brings to analysts is reported on ``publish/published_days``, a
daily-partitioned status: its partitions say which days are in the published KPIs, checked
(docs/decisions/0035).

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

from typing import Any

import dagster as dg

from dataops.core.warehouse import connect
from dataops.publish.analyst_warehouse import PublishReport, publish
from dataops.transform.build_stamp import build_window
from orchestration.lib.dbt import published_model_keys
from orchestration.lib.names import ANALYTICS_KEY, CHURN_RISK_KEY, PLATFORM_OWNER, PUBLISHED_DAYS_KEY, WAREHOUSE_POOL
from orchestration.lib.partitions import daily_partitions
from orchestration.lib.resources import PlatformResource


class PublishConfig(dg.Config):
    """``republish_unchanged`` writes the analyst warehouse even when analysts already have a publish made
    from the same inputs (docs/decisions/0021), which is otherwise reported and left as it is."""

    republish_unchanged: bool = False


def published_days_spec(partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.AssetSpec:
    """The per-day status operators read: not run by itself, reported by each publish."""
    return dg.AssetSpec(
        key=PUBLISHED_DAYS_KEY,
        description="Which days are in the published KPIs: a day is materialised by the publish that brought "
        "it to analysts, which ran only after every blocking check passed (its metadata names the run and checks).",
        group_name="publish",
        kinds={"duckdb"},
        owners=[PLATFORM_OWNER],
        deps=[ANALYTICS_KEY],
        partitions_def=partitions_def,
        tags={"layer": "egress"},
    )


def report_published_days(
    context: dg.AssetExecutionContext, report: PublishReport, partitions_def: dg.TimeWindowPartitionsDefinition
) -> int:
    """One materialisation of ``publish/published_days`` per day the publish brought (within the partitions)."""
    keys = set(partitions_def.get_partition_keys())
    checks = [
        e
        for e in context.instance.get_records_for_run(
            context.run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        if e.event_log_entry.dagster_event is not None
    ]
    passed = sum(1 for r in checks if r.event_log_entry.dagster_event.asset_check_evaluation_data.passed)
    reported = 0
    for day in report.days:
        if day.isoformat() not in keys:
            continue
        context.log_event(
            dg.AssetMaterialization(
                asset_key=PUBLISHED_DAYS_KEY,
                partition=day.isoformat(),
                metadata={
                    "publish_id": report.publish_id,
                    "published_at": report.published_at.isoformat(),
                    "checks_passed": dg.MetadataValue.text(
                        f"{passed} of {len(checks)} checks of run {context.run.run_id}"
                    ),
                },
            )
        )
        reported += 1
    return reported


def analytics_warehouse_asset(
    partitions_def: dg.TimeWindowPartitionsDefinition, upstream: list[dg.AssetKey]
) -> dg.AssetsDefinition:
    @dg.asset(
        key=ANALYTICS_KEY,
        description="The read-only analyst warehouse (marts, KPIs with flash/final, KPI history and restatements), "
        "swapped in atomically after every check passed.",
        group_name="publish",
        kinds={"duckdb"},
        owners=[PLATFORM_OWNER],
        deps=upstream,
        pool=WAREHOUSE_POOL,
        tags={"layer": "egress"},
    )
    def analytics_warehouse(
        context: dg.AssetExecutionContext, platform: PlatformResource, config: PublishConfig
    ) -> dg.MaterializeResult:
        """The marts and KPIs written aside and swapped in, unless analysts already have them."""
        with connect(platform.settings.build_db, read_only=True, limits=platform.limits) as conn:
            window = build_window(conn)
        report = publish(
            platform.settings,
            window,
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
        days = report_published_days(context, report, partitions_def)
        return dg.MaterializeResult(
            metadata={
                **metadata,
                "kpi_values_changed": report.changed_values,
                "restatements": report.restatements,
                "days_published": days,
                "tables": dg.MetadataValue.json(report.tables),
            }
        )

    return analytics_warehouse


@dg.definitions
def analytics_warehouse() -> dg.Definitions:
    """Downstream of every published dbt model and the churn scores (the gate's checks block through them)."""
    days = daily_partitions()
    upstream = [*published_model_keys(), CHURN_RISK_KEY]
    return dg.Definitions(assets=[analytics_warehouse_asset(days, upstream), published_days_spec(days)])

"""The product's event stream in motion (group `product`): a sensor sees hours whose manifest was delivered
and launches a small micro-batch that lands them (dataops/ingest/events.py), with its checks: the hourly
volume breaker, the event contract (quarantined lines, unknown event types as drift) and the landed
schema. Runs are idempotent: a batch re-run, or an object delivered twice, lands nothing twice.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import hashlib
import os
from collections.abc import Iterator

import dagster as dg
import polars as pl

from dataops.core.settings import Settings
from dataops.ingest import events
from dataops.ingest.events_volume import ALLOW_TAG, check_hours
from orchestration.lib.names import EVENTS_KEY, PLATFORM_OWNER, WAREHOUSE_POOL
from orchestration.lib.resources import PlatformResource
from quality.contracts.product import LandedEvents
from registry.loader import load_registry

EVENTS_JOB = "product_events_job"
MAX_OBJECTS = 300  # per micro-batch (about four days of hours): a backlog is worked off in several runs
MAX_QUARANTINE_RATE = 0.05  # of a batch's lines; the collectors' own dirt stays far below
# How often the sensor looks for delivered hours: every minute keeps the 15-minute freshness target with room;
# the end-to-end test looks more often so that it does not sit out a minute per delivery.
SENSOR_SECONDS = int(os.environ.get("DATAOPS_EVENTS_SENSOR_SECONDS", "60"))


class EventBatchConfig(dg.Config):
    max_objects: int = MAX_OBJECTS


# In the writers' pool: a batch writes new versions of the lake's event dates, which the dbt step of a run
# reads (the usage models), so it waits for a build in progress and a build waits for it.
@dg.multi_asset(
    name="ingest_product_events",
    pool=WAREHOUSE_POOL,
    specs=[
        dg.AssetSpec(
            EVENTS_KEY,
            description="The product's events: delivered hourly NDJSON.gz objects landed as Parquet by event "
            "date, one row per event_id (lake/raw/product/events).",
            group_name="product",
            kinds={"json", "parquet", "duckdb"},
            owners=[PLATFORM_OWNER],
            tags={"layer": "raw"},
            metadata={"contract": "quality/contracts/product.py", "lake": "lake/raw/product/events"},
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "hourly_volume",
            asset=EVENTS_KEY,
            blocking=True,
            description="Lines per delivered hour within the same hour's recent range (registry: volume_breaker).",
        ),
        dg.AssetCheckSpec(
            "event_contract",
            asset=EVENTS_KEY,
            description="Quarantined lines below the rate; event types the tracking plan does not know (drift).",
        ),
        dg.AssetCheckSpec(
            "landed_schema", asset=EVENTS_KEY, description="The batch's landed rows hold to LandedEvents."
        ),
    ],
)
def ingest_product_events(
    context: dg.AssetExecutionContext, config: EventBatchConfig, platform: PlatformResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    settings = platform.settings
    report = events.ingest_events(settings, max_objects=config.max_objects, batch_id=context.run.run_id)
    context.log.info(f"batch {report.batch_id[:8]}: {len(report.objects)} object(s), {report.landed} new event(s)")
    yield dg.MaterializeResult(
        asset_key=EVENTS_KEY,
        metadata={
            "dagster/row_count": report.landed,
            "objects": len(report.objects),
            "lines": report.lines,
            "events_new": report.landed,
            "duplicates": report.duplicates,
            "quarantined": report.quarantined,
            "scrubbed": report.scrubbed,
            "event_dates_written": dg.MetadataValue.json([d.isoformat() for d in report.dates]),
            "objects_not_matching_manifest": dg.MetadataValue.json(report.mismatched),
        },
    )
    yield _volume_result(context, settings, report)
    yield _contract_result(report)
    yield _schema_result(settings, report)


def _volume_result(
    context: dg.AssetExecutionContext, settings: Settings, report: events.BatchReport
) -> dg.AssetCheckResult:
    tag = context.run.tags.get(ALLOW_TAG, "")
    allow = {t.strip() for t in tag.split(",") if t.strip()}
    outcome = check_hours(events.ledger(settings), list(report.hour_lines), load_registry(), allow)
    return dg.AssetCheckResult(
        check_name="hourly_volume",
        asset_key=EVENTS_KEY,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{h}: {why}" for h, why in outcome.tripped.items()) or "every hour within range",
        metadata={
            "tripped": dg.MetadataValue.json(outcome.tripped),
            "allowed": dg.MetadataValue.json(outcome.allowed),
            "hours_checked": len(outcome.checked),
        },
    )


def _contract_result(report: events.BatchReport) -> dg.AssetCheckResult:
    rate = report.quarantined / report.lines if report.lines else 0.0
    drift = bool(report.unknown_types)
    return dg.AssetCheckResult(
        check_name="event_contract",
        asset_key=EVENTS_KEY,
        passed=rate <= MAX_QUARANTINE_RATE and not drift,
        severity=dg.AssetCheckSeverity.ERROR if rate > MAX_QUARANTINE_RATE else dg.AssetCheckSeverity.WARN,
        description=(f"unknown event types (drift): {report.unknown_types}; " if drift else "")
        + f"{report.quarantined} of {report.lines} line(s) quarantined",
        metadata={
            "quarantine_rate": rate,
            "unknown_event_types": dg.MetadataValue.json(report.unknown_types),
        },
    )


def _schema_result(settings: Settings, report: events.BatchReport) -> dg.AssetCheckResult:
    """The batch's own rows only (bounded by the batch), read back from the versions it wrote."""
    files = [events.newest_file(settings, d) for d in report.dates]
    frames = [
        pl.read_parquet(f, hive_partitioning=False).filter(pl.col("_batch_id") == report.batch_id)
        for f in files
        if f is not None
    ]
    failures = ""
    if frames:
        try:
            LandedEvents.validate(pl.concat(frames), lazy=True)
        except Exception as exc:  # pandera's SchemaErrors: its report is the description
            failures = str(exc)[:2000]
    return dg.AssetCheckResult(
        check_name="landed_schema",
        asset_key=EVENTS_KEY,
        passed=not failures,
        description=failures or f"{sum(f.height for f in frames)} landed row(s) hold to LandedEvents",
    )


def _pending_key(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


@dg.sensor(
    job_name=EVENTS_JOB,
    minimum_interval_seconds=SENSOR_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches a micro-batch when hours of product events are delivered (their manifest is there).",
)
def product_events_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    pending = events.pending(Settings.from_env())
    if not pending:
        return dg.SensorResult(skip_reason="no delivered hour waiting")
    names = [f"{o.name}@{o.sha256}" for o in pending]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"events-{_pending_key(names)}",
                tags={"dataops/trigger": f"{len(pending)} delivered object(s), first {pending[0].name}"},
            )
        ]
    )


@dg.definitions
def product_events() -> dg.Definitions:
    return dg.Definitions(
        assets=[ingest_product_events],
        sensors=[product_events_sensor],
        jobs=[
            dg.define_asset_job(
                EVENTS_JOB,
                selection=dg.AssetSelection.assets(EVENTS_KEY),
                description="A micro-batch of the product's delivered event objects into the lake.",
            )
        ],
    )

"""The volume circuit breaker as a blocking check of each ingestion asset, evaluated in its source's ingestion
step right after the table's load: a partition far outside its recent volume fails the step and halts the run
before dbt and publishing. Let an
expected spike through with the run tag ``dataops/allow_volume_spike=<system.table>|all`` (or the registry's
``volume_breaker.expected_spikes``).

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import datetime as dt
from contextlib import nullcontext
from pathlib import Path

import dagster as dg
import duckdb

from dataops.core.warehouse import Limits, connect
from dataops.ingest.volume import ALLOW_TAG, check_volume
from orchestration.lib.resources import PlatformResource
from quality.contracts import Contract
from registry.loader import load_registry

VOLUME_CHECK = "volume_within_recent_range"


def volume_check_spec(contract: Contract) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        VOLUME_CHECK,
        asset=dg.AssetKey([contract.system, contract.table]),
        blocking=True,
        description="Extracted rows per partition stay within the recent range "
        "(registry: volume_breaker); a spike halts the run before publishing.",
    )


def volume_check_result(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    contract: Contract,
    start: dt.date,
    end: dt.date,
    conn: duckdb.DuckDBPyConnection | None = None,
    only: set[dt.date] | None = None,
) -> dg.AssetCheckResult:
    """The breaker over the partitions the step just ingested, start..end (or those of it in ``only``)
    (docs/decisions/0013)."""
    tag = context.run.tags.get(ALLOW_TAG, "")
    allow = {t.strip() for t in tag.split(",") if t.strip()}
    return breaker_result(platform.settings.build_db, platform.limits, contract, start, end, allow, conn, only)


def breaker_result(
    build_db: Path,
    limits: Limits,
    contract: Contract,
    start: dt.date,
    end: dt.date,
    allow: set[str],
    conn: duckdb.DuckDBPyConnection | None = None,
    only: set[dt.date] | None = None,
) -> dg.AssetCheckResult:
    """Fails closed: a breaker that cannot be evaluated fails its check (the run stops before publishing)
    instead of raising, which would count its table as failed and skip the tables that reference it. It reads
    through ``conn`` when the step holds the warehouse open, else through a read-only connection of its own."""
    try:
        with nullcontext(conn) if conn is not None else connect(build_db, read_only=True, limits=limits) as reader:
            outcome = check_volume(reader, contract, start, end, load_registry(), allow, only)
    except Exception as exc:
        return dg.AssetCheckResult(
            asset_key=dg.AssetKey([contract.system, contract.table]),
            check_name=VOLUME_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"volume circuit breaker on {contract.name} could not be evaluated: "
            f"{type(exc).__name__}: {exc}",
        )
    if outcome.tripped:
        summary = "; ".join(f"{day}: {why}" for day, why in outcome.tripped.items())
        description = (
            f"volume circuit breaker tripped on {contract.name}: {summary}. If the spike is real, "
            f"re-run with the tag {ALLOW_TAG}={contract.name} or list it under "
            "volume_breaker.expected_spikes in registry/enterprise.yaml."
        )
    else:
        description = f"{contract.name}: volumes within range" + (
            f" (let through: {'; '.join(f'{d}: {w}' for d, w in outcome.allowed.items())})" if outcome.allowed else ""
        )
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey([contract.system, contract.table]),
        check_name=VOLUME_CHECK,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "partitions_checked": len(outcome.checked),
            "tripped": dg.MetadataValue.json(outcome.tripped),
            "let_through": dg.MetadataValue.json(outcome.allowed),
            "rows_and_recent_range": dg.MetadataValue.json(
                {d: [r, list(rng) if rng else None] for d, (r, rng) in outcome.checked.items()}
            ),
        },
    )

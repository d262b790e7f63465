"""The cleansing gate: pandera checks as blocking asset checks on the marts and KPIs, run in one step.

A failing check blocks what is downstream of its asset, which includes publishing; its metadata carries
the offending rows so the UI shows why.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import duckdb
import polars as pl

from dataops.core.warehouse import connect
from dataops.governance.definition_versions import adopted_registry
from dataops.transform.build_stamp import build_window
from orchestration.lib.dbt import published_model_keys
from orchestration.lib.metadata import markdown_table
from orchestration.lib.names import WAREHOUSE_POOL
from orchestration.lib.resources import PlatformResource
from quality.gate import CHURN_GATE, GATE, CheckOutcome, GateCheck, run_check
from registry.loader import Registry


def outcome_result(outcome: CheckOutcome, key: dg.AssetCheckKey) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {
        "rows_checked": outcome.rows_checked,
        "failing_rows": outcome.failing_rows,
        "failed_rules": dg.MetadataValue.json(outcome.failed_checks),
    }
    if not outcome.passed:
        metadata["failure_cases"] = dg.MetadataValue.md(markdown_table(outcome.failure_cases))
        metadata["failure_cases_json"] = dg.MetadataValue.json(
            outcome.failure_cases.with_columns(pl.all().cast(pl.String)).to_dicts()
        )
    return dg.AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=outcome.passed,
        metadata=metadata,  # type: ignore[arg-type]
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.summary(),
    )


def _window(conn: duckdb.DuckDBPyConnection) -> tuple[dt.date, dt.date]:
    """The business dates of the last build (docs/decisions/0035), or the whole history when the warehouse
    knows of none."""
    built = build_window(conn)
    if built is not None:
        return built
    return conn.execute("select min(date_day), max(date_day) from marts.dim_dates").fetchone()  # type: ignore[return-value]


def _key(check: GateCheck) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(list(check.asset)), check.name)


def gate_results(
    checks: list[GateCheck], conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry
) -> Iterator[dg.AssetCheckResult]:
    """One result per check; a check that cannot run fails with its error and does not hide the others."""
    for check in checks:
        key = _key(check)
        try:
            outcome = run_check(check, conn, start, end, registry)
        except Exception as exc:
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{check.name} could not run: {type(exc).__name__}: {exc}",
            )
            continue
        yield outcome_result(outcome, key)


def gate_step(name: str, checks: tuple[GateCheck, ...], description: str) -> dg.AssetChecksDefinition:
    """Checks run as one step (one connection, one step's overhead) with a result per check."""
    specs = [
        dg.AssetCheckSpec(check.name, asset=_key(check).asset_key, description=check.description, blocking=True)
        for check in checks
    ]

    # In the writers' pool: it opens the build warehouse, and a reader's lock would fail a concurrent writer.
    @dg.multi_asset_check(specs=specs, name=name, can_subset=True, pool=WAREHOUSE_POOL, description=description)
    def gate(context: dg.AssetCheckExecutionContext, platform: PlatformResource) -> Iterator[dg.AssetCheckResult]:
        selected = [check for check in checks if _key(check) in context.selected_asset_check_keys]
        with connect(platform.settings.build_db, read_only=True, limits=platform.limits) as conn:
            start, end = _window(conn)
            for result in gate_results(selected, conn, start, end, adopted_registry(platform.settings)):
                context.log.info(result.description or result.check_name)
                yield result

    return gate


@dg.definitions
def cleansing_gate() -> dg.Definitions:
    """The pandera models of quality/ over the last build's window: the marts and KPIs, and the churn scores."""
    # only the checks of models the project builds: a model disabled by configuration has no check to run
    built = set(published_model_keys())
    checks = tuple(check for check in GATE if _key(check).asset_key in built)
    return dg.Definitions(
        asset_checks=[
            gate_step(
                "cleansing_gate",
                checks,
                "The pandera models of quality/ over the last build's window of the marts and KPIs.",
            ),
            gate_step(
                "churn_risk_gate", CHURN_GATE, "The churn scores of the run's window: not degenerate, not drifted."
            ),
        ]
    )

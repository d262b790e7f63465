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
from orchestration.partitions import window
from orchestration.resources import PlatformResource
from quality.gate import GATE, CheckOutcome, GateCheck, run_check
from registry.loader import Registry, load_registry


def _markdown(frame: pl.DataFrame) -> str:
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_width_chars=600,
        fmt_str_lengths=60,
        tbl_cols=14,
        tbl_rows=25,
    ):
        return str(frame)


def outcome_result(outcome: CheckOutcome, key: dg.AssetCheckKey) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {
        "rows_checked": outcome.rows_checked,
        "failing_rows": outcome.failing_rows,
        "failed_rules": dg.MetadataValue.json(outcome.failed_checks),
    }
    if not outcome.passed:
        metadata["failure_cases"] = dg.MetadataValue.md(_markdown(outcome.failure_cases))
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


def _window(context: dg.AssetCheckExecutionContext, conn: duckdb.DuckDBPyConnection) -> tuple[dt.date, dt.date]:
    """The run's business dates, or the whole history when the gate runs outside a partitioned run."""
    if context.has_partition_key_range or context.has_partition_key:
        return window(context)
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


def checks() -> list[dg.AssetChecksDefinition]:
    """The whole gate as one step (one connection, one step's overhead) with a result per check."""
    specs = [
        dg.AssetCheckSpec(check.name, asset=_key(check).asset_key, description=check.description, blocking=True)
        for check in GATE
    ]

    @dg.multi_asset_check(specs=specs, name="cleansing_gate", can_subset=True)
    def cleansing_gate(
        context: dg.AssetCheckExecutionContext, platform: PlatformResource
    ) -> Iterator[dg.AssetCheckResult]:
        """The pandera models of quality/ over the run's window of the marts and KPIs."""
        selected = [check for check in GATE if _key(check) in context.selected_asset_check_keys]
        with connect(platform.settings.build_db, read_only=True, limits=platform.limits) as conn:
            start, end = _window(context, conn)
            for result in gate_results(selected, conn, start, end, load_registry()):
                context.log.info(result.description or result.check_name)
                yield result

    return [cleansing_gate]

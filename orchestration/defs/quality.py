"""The cleansing gate: pandera checks as blocking asset checks on the marts and KPIs.

A failing check blocks what is downstream of its asset, which includes publishing; its metadata carries
the offending rows so the UI shows why.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import datetime as dt

import dagster as dg
import polars as pl

from dataops.quality import GATE, CheckOutcome, GateCheck, run_check
from dataops.registry import load_registry
from dataops.warehouse import connect
from orchestration.resources import PlatformResource


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


def outcome_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
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
        passed=outcome.passed,
        metadata=metadata,  # type: ignore[arg-type]
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.summary(),
    )


def gate_check(check: GateCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=dg.AssetKey(list(check.asset)), name=check.name, description=check.description, blocking=True)
    def _check(context: dg.AssetCheckExecutionContext, platform: PlatformResource) -> dg.AssetCheckResult:
        partitioned = context.has_partition_key_range or context.has_partition_key
        with connect(platform.settings.build_db, read_only=True, limits=platform.limits) as conn:
            if partitioned:
                tw = context.partition_time_window
                start, end = tw.start.date(), tw.end.date() - dt.timedelta(days=1)
            else:  # the whole history
                start, end = conn.execute("select min(date_day), max(date_day) from marts.dim_dates").fetchone()  # type: ignore[misc]
            outcome = run_check(check, conn, start, end, load_registry())
        context.log.info(outcome.summary())
        return outcome_result(outcome)

    return _check


def checks() -> list[dg.AssetChecksDefinition]:
    return [gate_check(check) for check in GATE]

"""What the Dagster instance knows that the library cannot: the checks of a run."""

from __future__ import annotations

import dagster as dg


def failed_checks(instance: dg.DagsterInstance, run_id: str | None = None) -> tuple[list[str], list[str]]:
    """The checks that failed in a run (default: the latest run): errors, then warnings."""
    if run_id is None:
        runs = instance.get_runs(limit=1)
        if not runs:
            return [], []
        run_id = runs[0].run_id
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    failed: list[str] = []
    warned: list[str] = []
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.asset_check_evaluation_data if event is not None else None
        if evaluation is None or evaluation.passed:
            continue
        key = evaluation.asset_check_key
        name = f"{key.asset_key.to_user_string()}:{key.name}"
        (warned if evaluation.severity == dg.AssetCheckSeverity.WARN else failed).append(name)
    return failed, warned

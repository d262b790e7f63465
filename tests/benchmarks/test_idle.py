"""The idle copy of a job (benchmarks/idle.py) runs the same steps and writes the same events as the real one.

No ``from __future__ import annotations``: Dagster reads the assets' context annotations as types."""

from collections import Counter
from collections.abc import Iterator

import dagster as dg

from benchmarks.idle import _topological, idle_definitions

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


def _real() -> dg.Definitions:
    # specs listed after the ones that depend on them: the idle step must still yield them in dependency order
    specs = [
        dg.AssetSpec("mart", deps=["staged"], partitions_def=DAYS),
        dg.AssetSpec("staged", deps=["raw"], partitions_def=DAYS),
    ]
    checks = [dg.AssetCheckSpec("not_empty", asset="mart"), dg.AssetCheckSpec("unique", asset="staged")]

    @dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
    def raw(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"rows": 1})

    single = dg.BackfillPolicy.single_run()

    @dg.multi_asset(
        specs=specs, check_specs=checks, partitions_def=DAYS, backfill_policy=single, can_subset=True, pool="writer"
    )
    def model(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        for name, check in (("staged", "unique"), ("mart", "not_empty")):
            if dg.AssetKey(name) in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=name)
                yield dg.AssetCheckResult(asset_key=name, check_name=check, passed=True)

    @dg.asset_check(asset="raw")
    def raw_arrived() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    job = dg.define_asset_job("job", selection=dg.AssetSelection.all(), tags={"team": "data"})
    return dg.Definitions(assets=[raw, model], asset_checks=[raw_arrived], jobs=[job])


def _events(defs: dg.Definitions, only: list[str] | None = None) -> tuple[bool, Counter[str], list[str]]:
    tags = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-03"}
    selection = [dg.AssetKey(name) for name in only] if only else None
    with dg.DagsterInstance.ephemeral() as instance:  # in memory: the events are the same on any storage
        result = defs.resolve_job_def("job").execute_in_process(
            instance=instance, tags=tags, raise_on_error=False, asset_selection=selection
        )
        records = instance.get_records_for_run(result.run_id).records
    kinds = Counter(r.event_log_entry.dagster_event_type.value for r in records if r.event_log_entry.is_dagster_event)
    steps = sorted({str(r.event_log_entry.step_key) for r in records if r.event_log_entry.step_key})
    return result.success, kinds, steps


def test_the_idle_copy_runs_the_same_steps_and_writes_the_same_events() -> None:
    real, idle = _events(_real()), _events(idle_definitions(_real(), "job"))
    assert real[0] and idle[0]
    assert idle[2] == real[2] == ["model", "raw", "raw_raw_arrived"]
    counted = ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_OUTPUT", "ASSET_MATERIALIZATION_PLANNED")
    assert {k: idle[1][k] for k in counted} == {k: real[1][k] for k in counted}
    assert real[1]["ASSET_MATERIALIZATION"] == 3 * 3  # three assets, three days each


def test_the_idle_copy_keeps_the_jobs_tags_the_steps_pool_and_a_subset_of_its_assets() -> None:
    idle = idle_definitions(_real(), "job")
    assert idle.resolve_job_def("job").tags["team"] == "data"
    assert idle.resolve_assets_def("mart").node_def.pool == "writer"
    real, copied = _events(_real(), only=["staged"]), _events(idle, only=["staged"])
    assert real[0] and copied[0]
    assert copied[1]["ASSET_MATERIALIZATION"] == real[1]["ASSET_MATERIALIZATION"] == 3  # one asset, three days
    assert copied[1]["ASSET_CHECK_EVALUATION"] == real[1]["ASSET_CHECK_EVALUATION"] == 1  # its own check only


def test_an_asset_that_depends_on_its_own_past_is_ordered_without_recursing() -> None:
    yesterday = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
    specs = [
        dg.AssetSpec("balance", deps=[dg.AssetDep("balance", partition_mapping=yesterday), "ledger"]),
        dg.AssetSpec("ledger"),
    ]
    assert _topological(specs) == [dg.AssetKey("ledger"), dg.AssetKey("balance")]


def test_a_job_that_is_not_an_asset_job_is_named() -> None:
    @dg.op
    def nothing() -> None:
        return None

    @dg.job
    def plain() -> None:
        nothing()

    try:
        idle_definitions(dg.Definitions(jobs=[plain]), "plain")
    except TypeError as error:
        assert "plain is not an asset job" in str(error)
    else:
        raise AssertionError("an op job was copied")

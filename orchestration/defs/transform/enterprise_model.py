"""The dbt project as Dagster assets: sources map to the ingestion assets, each model's dbt tests are one asset
check, and a build covers the business dates loaded since the last complete build (docs/decisions/0035).

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import datetime as dt
import graphlib
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtProject, dbt_assets

from dataops.core.warehouse import connect
from dataops.governance.definition_versions import adopted_registry
from dataops.governance.metadata import load_manifest
from dataops.ingest.events import lake_versions
from dataops.ingest.ledger import mark_built
from dataops.transform.build_stamp import (
    build_window,
    built_from,
    forget_build,
    record_build,
    registry_build_inputs,
    window_span,
)
from dataops.transform.runner import DBT_LOG, keep_run_target, run_target, start_dbt
from orchestration.lib.dbt import BuildEvents, BuildProgress, dbt_project, with_row_counts
from orchestration.lib.dbt import translator as model_translator
from orchestration.lib.names import WAREHOUSE_POOL
from orchestration.lib.resources import DbtProcessResource, PlatformResource


class DbtRunConfig(dg.Config):
    """``full_refresh`` rebuilds the incremental models from scratch instead of recomputing the run's window.
    ``rebuild_unchanged`` runs dbt even when the warehouse already holds this window built from the same
    inputs (docs/decisions/0020), which otherwise reports the models unchanged without running dbt."""

    full_refresh: bool = False
    rebuild_unchanged: bool = False


def enterprise_model_assets(project: DbtProject) -> dg.AssetsDefinition:
    translator = model_translator()
    manifest = load_manifest(project.manifest_path)  # read again if caught half written by a dbt command

    @dbt_assets(
        manifest=manifest,
        project=project,
        dagster_dbt_translator=translator,
        pool=WAREHOUSE_POOL,
        name="enterprise_model",
    )
    def enterprise_model(
        context: dg.AssetExecutionContext,
        platform: PlatformResource,
        dbt_process: DbtProcessResource,
        config: DbtRunConfig,
    ) -> Iterator[Any]:
        """The dbt project: staging, intermediate, marts and KPIs for the business dates loaded since the last
        complete build."""
        started = dt.datetime.now(dt.UTC)
        settings = platform.settings
        registry = adopted_registry(settings)  # the definitions this data directory adopted
        with connect(settings.build_db, limits=platform.limits) as conn:
            window = build_window(conn)
            span = window_span(window)
            inputs = registry_build_inputs(conn, span, registry, lake=lake_versions(settings))
            last = built_from(conn)
            if last is not None and last[0] == inputs and not (config.full_refresh or config.rebuild_unchanged):
                mark_built(conn, started)  # the warehouse holds this very build: nothing is left to build
                dbt_process.release()  # the dbt started with the run, not needed: its memory back now
                yield from _unchanged(context, span, last_run=last[1])
                return
            forget_build(conn)
        # unit tests belong to development and CI (pytest runs them), not to every production run
        args = ["build", "--exclude-resource-type", "unit_test", *_selection(context, manifest, translator, project)]
        args += ["--full-refresh"] if config.full_refresh else []
        target = run_target(settings, context.run.run_id, registry=registry)
        build = BuildEvents(manifest, translator, project, set(context.selected_asset_check_keys))
        held: list[dg.MaterializeResult | dg.AssetCheckResult] = []  # on Spark: until its tables are back
        progress = BuildProgress()
        # the dataops-dbt started with the run, dbt imported (decision 0092), else a new one if it died
        dbt = start_dbt(args, settings, target, registry, span if window else None, platform.limits, dbt_process.take())
        try:  # from here dbt writes its log: it is read, and dbt stopped, whatever happens
            how = "started with the run" if dbt.prepared else "started now"
            context.log.info(
                f"dbt build for {span[0] or 'the whole history'}..{span[1]} (registry {registry.version}), "
                f"in dataops-dbt {how} (pid {dbt.process.pid})"
            )
            for event in dbt.events():
                for went_wrong, line in progress.lines(event):  # dbt's "3 of 44 ERROR creating ...", and counts
                    (context.log.warning if went_wrong else context.log.info)(line)
                # each node's events as it finishes, written while dbt builds the next (decision 0080)
                if dbt.load_back is None:
                    yield from build.events(event)
                else:
                    held += build.events(event)
            result = dbt.result()
        finally:
            dbt.stop()
            keep_run_target(settings, target, registry=registry)
        if held:  # a Spark build's tables are in the build warehouse now: counted there
            yield from with_row_counts(held, settings.build_db, platform.limits)
        yield from build.rest()
        if not result.success:
            failed = [
                f"{r['unique_id']}: {r.get('message')}" for r in result.results if r["status"] in ("error", "fail")
            ]
            raise dg.Failure(
                description="dbt build failed: " + ("; ".join(failed[:5]) or result.output[-2000:] or "see dbt.log"),
                metadata={"dbt_log": dg.MetadataValue.path(str(target / DBT_LOG))},
            )
        if not context.is_subset:  # only a build of every model and test is a complete build
            with connect(settings.build_db, limits=platform.limits) as conn:
                record_build(conn, inputs, span, context.run.run_id, started)

    return enterprise_model


def _selection(
    context: dg.AssetExecutionContext, manifest: dict[str, Any], translator: Any, project: DbtProject
) -> list[str]:
    """``--select`` of the selected models when the step runs a subset, else nothing (the whole project)."""
    if not context.is_subset:
        return []
    selected = context.selected_asset_keys
    names = [
        node["name"]
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "seed", "snapshot")
        and translator.get_asset_spec(manifest, uid, project).key in selected
    ]
    return ["--select", *sorted(names)]


def _unchanged(context: dg.AssetExecutionContext, span: tuple[str, str], last_run: str) -> Iterator[Any]:
    """Every selected model, reported as the last complete build left it, without running dbt.

    Downstream steps (the cleansing gate, publishing, egress) still run: the run that built these tables
    may have stopped before publishing them.
    """
    context.log.info(
        f"dbt not run: the warehouse holds {span[0] or 'the whole history'}..{span[1]} built by run {last_run} "
        "from the same raw rows, "
        "project, registry and archive log; run with rebuild_unchanged (or full_refresh) to run dbt anyway"
    )
    selected = context.selected_asset_keys
    deps = context.assets_def.asset_deps
    for key in graphlib.TopologicalSorter({key: deps[key] & selected for key in selected}).static_order():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={"dbt": "unchanged, not rebuilt", "built_by_run": dg.MetadataValue.dagster_run(last_run)},
        )


@dg.definitions
def enterprise_model() -> dg.Definitions:
    return dg.Definitions(assets=[enterprise_model_assets(dbt_project())])

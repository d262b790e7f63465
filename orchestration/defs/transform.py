"""The dbt project as Dagster assets (dagster-dbt): sources map to the ingestion assets, dbt tests are
asset checks, and a partitioned run passes its business-date window to dbt.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import graphlib
import importlib.metadata
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from packaging import version

from dataops.core.settings import DBT_PROJECT_DIR
from dataops.core.warehouse import connect
from dataops.governance.catalog import DomainNote, domain_notes
from dataops.governance.policy import Policy, load_policy
from dataops.transform.dbt import (
    build_inputs,
    built_from,
    dbt_env,
    dbt_executable,
    forget_build,
    keep_run_target,
    prepare_manifest,
    record_build,
    registry_vars,
    run_target,
    write_registry_seeds,
)
from orchestration.defs.ingest import WAREHOUSE_POOL
from orchestration.partitions import window
from orchestration.resources import PlatformResource
from registry.loader import load_registry

LAYERS = ("staging", "intermediate", "marts", "kpis")


class EnterpriseModelTranslator(DagsterDbtTranslator):
    """Groups by layer, owners and classification from each model's meta, a one-line description."""

    def __init__(
        self,
        settings: DagsterDbtTranslatorSettings | None = None,
        policy: Policy | None = None,
        notes: dict[str, list[DomainNote]] | None = None,
    ) -> None:
        super().__init__(settings=settings)
        self.policy = policy
        self.notes = notes or {}

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        fqn = dbt_resource_props.get("fqn", [])
        return next((part for part in fqn if part in LAYERS), "transform")

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        owner = _meta(dbt_resource_props).get("owner", "data-platform")
        return [f"team:{owner}"]

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        text = dbt_resource_props.get("description") or dbt_resource_props["name"]
        return " ".join(text.split("{{")[0].split())  # the first sentence block, without doc() references

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        classification = _meta(dbt_resource_props).get("classification")
        return {"classification": classification} if classification else {}

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        """The metadata protocol on the asset: what the dataset declares, and who may read it (the policy)."""
        meta = _meta(dbt_resource_props)
        out = dict(super().get_metadata(dbt_resource_props))
        for key in ("classification", "domain", "grain", "refresh_schedule", "retention_days"):
            if key in meta:
                out[key] = meta[key]
        for key in ("key", "sort_order"):
            if key in meta:
                out[key] = ", ".join(meta[key])
        pii = [
            c["name"]
            for c in dbt_resource_props.get("columns", {}).values()
            if "pii" in (c.get("tags") or []) or "pii" in (c.get("config", {}).get("tags") or [])
        ]
        if pii:
            out["pii_columns"] = dg.MetadataValue.json(pii)
        dataset = f"{dbt_resource_props.get('schema')}.{dbt_resource_props['name']}"
        if self.policy is not None and meta.get("classification"):
            out["access_roles"] = dg.MetadataValue.json(self.policy.readers(dataset, meta["classification"]))
            if pii:
                out["clear_personal_data_roles"] = dg.MetadataValue.json(
                    self.policy.clear_personal_data_readers(dataset)
                )
        notes = self.notes.get(dataset, [])
        if notes:
            out["domain_notes"] = " ".join(n.notes for n in notes if n.notes)
        return out


def _meta(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**props.get("meta", {}), **props.get("config", {}).get("meta", {})}


class DbtRunConfig(dg.Config):
    """``full_refresh`` rebuilds the incremental models from scratch instead of recomputing the run's window.
    ``rebuild_unchanged`` runs dbt even when the warehouse already holds this window built from the same
    inputs (docs/decisions/0020), which otherwise reports the models unchanged without running dbt."""

    full_refresh: bool = False
    rebuild_unchanged: bool = False


class LocalDbtCliResource(DbtCliResource):
    """The dbt of this environment, without two start-up costs dagster-dbt pays on every run.

    Measured here (docs/decisions/0009): dagster-dbt runs ``dbt --version`` (5.5 s) and builds a dbt adapter
    handle (4 s) before each invocation, out of a 25 s dbt step. The version is read from the installed
    package instead, and the adapter handle, which only serves metadata fetching this project does not use,
    is not built.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


def dbt_resource() -> DbtCliResource:
    return LocalDbtCliResource(
        project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()
    )


def assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    manifest = prepare_manifest()
    translator = EnterpriseModelTranslator(
        settings=DagsterDbtTranslatorSettings(enable_asset_checks=True), policy=load_policy(), notes=domain_notes()
    )

    @dbt_assets(
        manifest=manifest,
        dagster_dbt_translator=translator,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        name="enterprise_model",
    )
    def enterprise_model(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, platform: PlatformResource, config: DbtRunConfig
    ) -> Iterator[Any]:
        """The dbt project: staging, intermediate, marts and KPIs for the run's business dates."""
        start, end = window(context)
        span = (start.isoformat(), end.isoformat())
        registry = load_registry()
        write_registry_seeds(registry)
        dbt_vars = registry_vars(registry)
        settings = platform.settings
        with connect(settings.build_db, limits=platform.limits) as conn:
            inputs = build_inputs(conn, span, dbt_vars)
            last = built_from(conn)
            if last is not None and last[0] == inputs and not (config.full_refresh or config.rebuild_unchanged):
                yield from _unchanged(context, span, last_run=last[1])
                return
            forget_build(conn)
        # unit tests belong to development and CI (pytest runs them), not to every production run
        args = ["build", "--exclude-resource-type", "unit_test", "--vars", dbt_vars]
        if config.full_refresh:
            args.append("--full-refresh")
        context.log.info(f"dbt {' '.join(args[:1])} for {start}..{end} (registry {registry.version})")
        target = run_target(settings, context.run.run_id)
        try:
            with dbt_env(settings, platform.limits, span):
                yield from dbt.cli(args, context=context, target_path=target).stream()
        finally:
            keep_run_target(settings, target)
        if not context.is_subset:  # only a build of every model and test is a complete build
            with connect(settings.build_db, limits=platform.limits) as conn:
                record_build(conn, inputs, span, context.run.run_id)

    return [enterprise_model]


def _unchanged(context: dg.AssetExecutionContext, span: tuple[str, str], last_run: str) -> Iterator[Any]:
    """Every selected model, reported as the last complete build left it, without running dbt.

    Downstream steps (the cleansing gate, publishing, egress) still run: the run that built these tables
    may have stopped before publishing them.
    """
    context.log.info(
        f"dbt not run: the warehouse holds {span[0]}..{span[1]} built by run {last_run} from the same raw rows, "
        "project, registry and archive log; run with rebuild_unchanged (or full_refresh) to run dbt anyway"
    )
    selected = context.selected_asset_keys
    deps = context.assets_def.asset_deps
    for key in graphlib.TopologicalSorter({key: deps[key] & selected for key in selected}).static_order():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={"dbt": "unchanged, not rebuilt", "built_by_run": dg.MetadataValue.dagster_run(last_run)},
        )

"""Dagster alone: the platform's job, asset graph and checks, with every step doing no work.

The floor measures the data work with nothing around it. This measures the opposite: what Dagster itself
costs to run the same job over the same window on the same kind of instance, however fast the work inside
the steps. Each step keeps its assets, checks, partitions, backfill policy and concurrency pool, and reports
each selected asset materialised and each selected check passed, so the run writes the events the real one
writes, except the steps' log messages (the harness's smoke test compares them). If this alone exceeds a
target, no work inside the steps can meet it on this graph and instance.

Left out, as an idle step never needs them: resources, retry policies, op tags and config, and the job's
config and hooks. A graph-backed asset is refused, not flattened.

No ``from __future__ import annotations`` here: Dagster reads the steps' context annotations as types.
"""

from collections.abc import Iterator
from typing import Any, TypeGuard

import dagster as dg


def _topological(specs: list[dg.AssetSpec]) -> list[dg.AssetKey]:
    """The step's asset keys, each after the ones it depends on (Dagster requires that order of outputs)."""
    deps = {spec.key: {dep.asset_key for dep in spec.deps} for spec in specs}
    order: list[dg.AssetKey] = []

    def visit(key: dg.AssetKey) -> None:
        if key in order or key not in deps:
            return
        for parent in sorted(deps[key] - {key}, key=lambda k: k.to_user_string()):  # not itself (yesterday's)
            visit(parent)
        order.append(key)

    for spec in specs:
        visit(spec.key)
    return order


def _checks_passed(context: Any) -> Iterator[dg.AssetCheckResult]:
    """Each selected check passed."""
    for check in sorted(context.selected_asset_check_keys, key=lambda c: (c.asset_key.to_user_string(), c.name)):
        yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)


def idle_assets(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The same step as ``assets_def`` (name, assets, checks, partitions, policy, pool), doing no work."""
    node = assets_def.node_def
    if not isinstance(node, dg.OpDefinition):
        raise TypeError(f"{node.name} is a graph-backed asset: its idle copy would be one step, not its ops")
    pool = node.pool
    specs, checks = list(assets_def.specs), list(assets_def.check_specs)
    order = _topological(specs)
    if not specs:  # checks alone (the gate, the freshness checks)

        @dg.multi_asset_check(specs=checks, name=node.name, can_subset=assets_def.can_subset, pool=pool)
        def idle_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
            yield from _checks_passed(context)

        return idle_checks

    @dg.multi_asset(
        specs=specs,
        check_specs=checks,
        name=node.name,
        partitions_def=assets_def.partitions_def,
        backfill_policy=assets_def.backfill_policy,
        can_subset=assets_def.can_subset,
        pool=pool,
    )
    def idle_step(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Each selected asset materialised, in dependency order, then each selected check passed."""
        for key in order:
            if key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key)
        yield from _checks_passed(context)

    return idle_step


def _runs(definition: object) -> TypeGuard[dg.AssetsDefinition]:
    """Whether Dagster executes it (external assets and specs pass through unchanged)."""
    return isinstance(definition, dg.AssetsDefinition) and definition.is_executable


def idle_definitions(real: dg.Definitions, job_name: str) -> dg.Definitions:
    """The real definitions' assets and checks as idle steps, and a job of the same name, selection,
    partitions and tags (no resources: an idle step needs none)."""
    job = next(j for j in real.jobs or [] if j.name == job_name)
    selection = getattr(job, "selection", None)  # an asset job (define_asset_job) has one
    if selection is None:
        raise TypeError(f"{job_name} is not an asset job: it has no asset selection to copy")
    assets = [idle_assets(a) if _runs(a) else a for a in real.assets or []]
    checks = [idle_assets(c) if _runs(c) else c for c in real.asset_checks or []]
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[dg.define_asset_job(job_name, selection=selection, tags=job.tags)],  # partitions follow the assets
        executor=dg.in_process_executor,
    )

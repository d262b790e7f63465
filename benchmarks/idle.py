"""Dagster alone: the platform's job, asset graph and checks, with every step doing no work.

The floor measures the data work with nothing around it. This measures the opposite: what Dagster itself
costs to run the same job over the same window on the same kind of instance, however fast the work inside
the steps. Each step keeps its assets, checks, partitions, backfill policy and concurrency pool, and reports
each selected asset materialised and each selected check passed, so the run writes the events the real one
writes, except the steps' log messages (the harness's smoke test compares them). If this alone exceeds a
target, no work inside the steps can meet it on this graph and instance.

A step that reports a daily-partitioned status asset besides its own (publishing reports
``publish/published_days``, docs/decisions/0035) reports it in its idle copy too, one event per day of the
window its run names (the ``dataops/window`` tag a build carries).

Left out, as an idle step never needs them: resources, retry policies, op tags and config, and the job's
config and hooks. A graph-backed asset is refused, not flattened.

No ``from __future__ import annotations`` here: Dagster reads the steps' context annotations as types.
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, TypeGuard

import dagster as dg

WINDOW_TAG = "dataops/window"  # orchestration.lib.names: "<first day>..<last day>" on a build run


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


def _reported_days(context: Any, reported: list[dg.AssetKey]) -> Iterator[dg.AssetMaterialization]:
    """One materialisation of each reported status asset per day of the run's window."""
    window = context.run.tags.get(WINDOW_TAG)
    if not reported or not window:
        return
    first, last = (dt.date.fromisoformat(d) for d in window.split(".."))
    for key in reported:
        day = first
        while day <= last:
            yield dg.AssetMaterialization(asset_key=key, partition=day.isoformat())
            day += dt.timedelta(days=1)


def idle_assets(assets_def: dg.AssetsDefinition, reported: Sequence[dg.AssetKey] = ()) -> dg.AssetsDefinition:
    """The same step as ``assets_def`` (name, assets, checks, partitions, policy, pool), doing no work; it
    reports the ``reported`` status assets for its run's window."""
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
        for event in _reported_days(context, list(reported)):
            context.log_event(event)
        yield from _checks_passed(context)

    return idle_step


def _runs(definition: object) -> TypeGuard[dg.AssetsDefinition]:
    """Whether Dagster executes it (external assets and specs pass through unchanged)."""
    return isinstance(definition, dg.AssetsDefinition) and definition.is_executable


def _status_assets(real: dg.Definitions) -> dict[dg.AssetKey, list[dg.AssetKey]]:
    """Partitioned assets no step runs, by the asset they follow: the steps that make those assets report them."""
    graph = real.resolve_asset_graph()
    reported: dict[dg.AssetKey, list[dg.AssetKey]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_executable and node.partitions_def is not None:
            for parent in node.parent_keys:
                reported.setdefault(parent, []).append(key)
    return reported


def idle_definitions(real: dg.Definitions, job_names: str | Sequence[str]) -> dg.Definitions:
    """The real definitions' assets and checks as idle steps, and jobs of the same names, selections,
    partitions and tags (no resources: an idle step needs none)."""
    names = [job_names] if isinstance(job_names, str) else list(job_names)
    jobs = []
    for name in names:
        job = next(j for j in real.jobs or [] if j.name == name)
        selection = getattr(job, "selection", None)  # an asset job (define_asset_job) has one
        if selection is None:
            raise TypeError(f"{name} is not an asset job: it has no asset selection to copy")
        jobs.append(dg.define_asset_job(name, selection=selection, tags=job.tags))  # partitions follow the assets
    status = _status_assets(real)

    def idle(definition: dg.AssetsDefinition) -> dg.AssetsDefinition:
        return idle_assets(definition, [s for key in definition.keys for s in status.get(key, [])])

    assets = [idle(a) if _runs(a) else a for a in real.assets or []]
    checks = [idle_assets(c) if _runs(c) else c for c in real.asset_checks or []]
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, executor=dg.in_process_executor)

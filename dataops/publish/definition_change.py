"""Changing a definition: propose (build beside, report the impact), adopt (rebuild, restate with the cause).

A proposal is built in its own copy of the build warehouse under the proposed registry, checked by dbt's
tests and the gate's rules (a change that breaks one is refused with the rule), and compared with the adopted
build: per KPI, day and month, old, new and difference, and the customers whose state moves. Nothing
analysts read is touched. Adopting a version rebuilds a copy of the build warehouse under it, checks it,
swaps it in, and publishes: every changed value lands in ``publish.kpi_restatements`` with the cause
"definition change vN -> vM" and the reason. Rolling back is adopting the version before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from dataops.core.settings import DBT_PROJECT_DIR, Settings, account_name, caller_uid
from dataops.core.warehouse import connect
from dataops.governance import audit
from dataops.governance.definition_versions import (
    IMPACT_SCHEMAS,
    Approval,
    ApprovalError,
    adopted_version,
    append_history,
    changes_between,
    check_approvals,
    proposal_dir,
    record_change,
    recorded_changes,
    required_roles,
    set_adopted,
)
from dataops.governance.policy import load_policy
from dataops.publish.analyst_warehouse import PublishReport, publish
from dataops.transform.project import authored_files, registry_vars
from dataops.transform.runner import run_dbt
from quality.gate import GATE, run_check
from registry.loader import Registry, definition_periods_seed_csv, kpi_seed_csv, load_registry
from registry.versions import (
    PER_DAY_DEFINITIONS,
    DefinitionChange,
    read_change,
    registry_at,
    version_number,
)

BUILD_ARGS = ["build", "--exclude-resource-type", "unit_test", "--full-refresh"]
# A proposal's checked build, kept beside its report until it is adopted (or proposed again): adopting it
# while nothing has changed swaps it in instead of building the same again.
PROPOSED_BUILD, PROPOSED_BUILD_RECORD = "build.duckdb", "build.json"


class DefinitionRefused(ValueError):
    """A proposal or an adoption broke a check or an invariant, or is not in order; the message names it."""


@dataclass
class Proposal:
    change: DefinitionChange
    from_version: int
    folder: Path
    kpi_values_moved: int
    days_moved: int
    customers_moved: int
    tables: dict[str, Path] = field(default_factory=dict)


@dataclass
class Adoption:
    version: int
    from_version: int
    cause: str
    approvals: list[Approval]
    publish: PublishReport


def _copy_build(settings: Settings, target: Settings) -> list[int]:
    """A consistent copy of the build warehouse (checkpointed first: nothing left in its write-ahead log);
    returns the identity of the copied file (``_checkpointed_identity``)."""
    identity = _checkpointed_identity(settings)
    target.warehouse_dir.mkdir(parents=True, exist_ok=True)
    for stale in target.warehouse_dir.glob("build.duckdb*"):
        stale.unlink()
    shutil.copyfile(settings.build_db, target.build_db)
    return identity


def _checkpointed_identity(settings: Settings) -> list[int]:
    """The build warehouse checkpointed, and its file's identity: any write since (a daily run, an adoption)
    changes it; a checkpoint with nothing to write does not."""
    with connect(settings.build_db) as conn:
        conn.execute("checkpoint")
    stat = settings.build_db.stat()
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _definitions_digest(registry: Registry) -> str:
    """What a build reads besides the warehouse: the definitions (vars, the seeds that vary by version) and the
    dbt project's own files (the generated registry seeds aside). Equal digests, equal builds."""
    digest = hashlib.sha256()
    for part in (registry_vars(registry), definition_periods_seed_csv(registry), kpi_seed_csv(registry)):
        digest.update(part.encode())
    for path in authored_files():
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + path.read_bytes())
    return digest.hexdigest()


def _keep_build(folder: Path, aside: Settings, basis: list[int], from_version: int, registry: Registry) -> None:
    """Keep a proposal's checked build beside its report, with what it was built from, for its adoption."""
    with connect(aside.build_db) as conn:
        conn.execute("drop schema if exists definitions cascade")  # the report's tables: files beside it
        conn.execute("checkpoint")
    os.replace(aside.build_db, folder / PROPOSED_BUILD)
    made = {"from_version": from_version, "basis": basis, "definitions": _definitions_digest(registry)}
    (folder / PROPOSED_BUILD_RECORD).write_text(json.dumps(made))


def _drop_kept_build(folder: Path) -> None:
    for name in (PROPOSED_BUILD, PROPOSED_BUILD_RECORD):
        (folder / name).unlink(missing_ok=True)


def _swap_in_proposed_build(settings: Settings, version: int, current: int, registry: Registry) -> bool:
    """Adopt the proposal's own checked build when nothing changed since it was made: the same adopted version,
    the same build warehouse (no run since), the same definitions. Otherwise (or for a roll back) no."""
    folder = proposal_dir(settings, version)
    record, build = folder / PROPOSED_BUILD_RECORD, folder / PROPOSED_BUILD
    if not (record.exists() and build.exists()):
        return False
    made = json.loads(record.read_text())
    same = (
        made["from_version"] == current
        and made["definitions"] == _definitions_digest(registry)
        and made["basis"] == _checkpointed_identity(settings)
    )
    if same:
        os.replace(build, settings.build_db)
    _drop_kept_build(folder)
    return same


def build_and_check(settings: Settings, registry: Registry) -> None:
    """Rebuild every model under ``registry`` and run dbt's tests and the gate's rules over every day."""
    result = run_dbt(BUILD_ARGS, settings, registry)
    failed = sorted(uid for uid, status in result.statuses().items() if status in {"fail", "error"})
    if not result.success or failed:
        names = ", ".join(uid.split(".")[-1] for uid in failed) or result.output[-500:]
        raise DefinitionRefused(f"{registry.version} breaks dbt checks: {names}")
    with connect(settings.build_db, read_only=True) as conn:
        start, end = conn.execute("select min(date_day), max(date_day) from marts.dim_dates").fetchall()[0]
        broken = []
        for check in GATE:
            outcome = run_check(check, conn, start, end, registry)
            if not outcome.passed:
                broken.append(f"{check.name} ({', '.join(outcome.failed_checks)})")
    if broken:
        raise DefinitionRefused(f"{registry.version} breaks the gate's rules: {'; '.join(broken)}")


def propose(settings: Settings, change_file: Path, now: dt.datetime | None = None) -> Proposal:
    """Build the KPIs under the proposed change beside the adopted ones, and write its impact report."""
    now = now or dt.datetime.now(dt.UTC)
    change = read_change(change_file)
    recorded = [c for c in recorded_changes(settings) if c.version != change.version]
    newest = max([adopted_version(settings), *(c.version for c in recorded)])
    if change.version != newest + 1:
        raise DefinitionRefused(f"the proposal is {change.label}; the next version here is v{newest + 1}")
    current = adopted_version(settings)
    registry = registry_at(change.version, [*recorded, change])  # a broken change fails here, naming its path
    folder = proposal_dir(settings, change.version)
    aside = Settings(folder / "data")
    _drop_kept_build(folder)
    try:
        basis = _copy_build(settings, aside)
        build_and_check(aside, registry)
        tables = _impact_report(settings, aside, change, registry, folder)
        _keep_build(folder, aside, basis, current, registry)
    finally:  # the report and the checked build stay; the rest of the proposal's data directory does not
        shutil.rmtree(aside.data_dir, ignore_errors=True)
    record_change(settings, change)
    counts = {name: pl.read_parquet(path) for name, path in tables.items()}
    kpis = counts["impact_kpis"].filter((pl.col("grain") == "day") & (pl.col("difference") != 0))
    append_history(
        settings,
        {
            "event": "proposed",
            "version": change.label,
            "from_version": f"v{current}",
            "at": now.isoformat(),
            "by": change.author,
            "reason": change.reason,
        },
    )
    return Proposal(
        change,
        current,
        folder,
        kpi_values_moved=kpis.height,
        days_moved=kpis["period"].n_unique(),
        customers_moved=counts["impact_customers"]["customer_id"].n_unique(),
        tables=tables,
    )


IMPACT_DAILY = """
    select coalesce(new.kpi_name, old.kpi_name) as kpi_name, coalesce(new.date_day, old.date_day) as period,
           old.value as old_value,
           case when $restates or coalesce(new.date_day, old.date_day) >= $effective then new.value
                else old.value end as new_value,
           old.definition_version as old_version,
           case when $restates or coalesce(new.date_day, old.date_day) >= $effective then new.definition_version
                else old.definition_version end as new_version
    from kpis.kpi_daily as new
    full join adopted.kpis.kpi_daily as old on new.kpi_name = old.kpi_name and new.date_day = old.date_day
"""
# A month as kpi_monthly has it: the month's last day for a stock, the month's sum for a flow.
IMPACT_MONTHLY = """
    select kpi_name, 'month' as grain, date_trunc('month', period)::date as month,
           case when any_value(kind) = 'stock' then arg_max(old_value, period) else sum(old_value) end,
           case when any_value(kind) = 'stock' then arg_max(new_value, period) else sum(new_value) end,
           arg_max(old_version, period), arg_max(new_version, period)
    from daily inner join kinds using (kpi_name)
    group by kpi_name, month
"""
IMPACT_CUSTOMERS = """
    with moved as (
        select coalesce(new.customer_id, old.customer_id) as customer_id,
               coalesce(new.date_day, old.date_day) as date_day,
               old.state as old_state, new.state as new_state,
               old.is_delinquent as old_delinquent, new.is_delinquent as new_delinquent
        from marts.fct_customer_states_daily as new
        full join adopted.marts.fct_customer_states_daily as old
            on new.customer_id = old.customer_id and new.date_day = old.date_day
        where (old.state is distinct from new.state or old.is_delinquent is distinct from new.is_delinquent)
          and ($restates or coalesce(new.date_day, old.date_day) >= $effective)
    )
    select $proposal as proposal, customer_id,
           case when old_state = 'active' and new_state is distinct from 'active' then 'stops counting as active'
                when new_state = 'active' and old_state is distinct from 'active' then 'starts counting as active'
                when old_state is distinct from new_state then 'state ' || old_state || ' -> ' || new_state
                when new_delinquent then 'becomes delinquent' else 'stops being delinquent' end as movement,
           old_state, new_state, old_delinquent, new_delinquent,
           min(date_day) as first_day, max(date_day) as last_day, count(*) as days
    from moved group by all order by customer_id, first_day
"""


def _impact_report(
    settings: Settings, aside: Settings, change: DefinitionChange, registry: Registry, folder: Path
) -> dict[str, Path]:
    """Old against new per KPI, day and month, and the customers that move: Parquet files in the proposal's
    folder, published as ``definitions.impact_*``."""
    params = {"restates": change.restates_history, "effective": change.effective}
    kinds = pl.DataFrame({"kpi_name": registry.kpi_names, "kind": [k.kind for k in registry.kpis]})
    paths = {name: folder / f"{name}.parquet" for name in IMPACT_SCHEMAS}
    with connect(aside.build_db) as conn:
        conn.execute(f"attach '{settings.build_db}' as adopted (read_only)")
        try:
            conn.register("kinds", kinds)
            conn.execute("create schema if not exists definitions")
            conn.execute(f"create or replace temp table daily as {IMPACT_DAILY}", params)
            conn.execute(
                f"""
                create or replace table definitions.impact_kpis as
                select $proposal as proposal, kpi_name, grain, period, old_value, new_value,
                       coalesce(new_value, 0) - coalesce(old_value, 0) as difference, old_version, new_version
                from (select kpi_name, 'day' as grain, period, old_value, new_value, old_version, new_version
                      from daily
                      union all {IMPACT_MONTHLY})
                order by kpi_name, grain, period
            """,
                {"proposal": change.label},
            )
            conn.execute(
                f"create or replace table definitions.impact_customers as {IMPACT_CUSTOMERS}",
                {**params, "proposal": change.label},
            )
            for name, path in paths.items():
                frame = conn.sql(f"select * from definitions.{name}").pl()
                frame.cast(IMPACT_SCHEMAS[name]).select(list(IMPACT_SCHEMAS[name])).write_parquet(path)
        finally:
            conn.execute("detach adopted")
    return paths


def _cause(changes: Sequence[DefinitionChange], old: int, new: int, reason: str | None) -> str:
    if new > old:
        why = reason or "; ".join(c.reason for c in changes)
    else:
        why = f"rolled back ({reason or '; '.join(f'{c.label} withdrawn' for c in changes)})"
    return f"definition change v{old} -> v{new}: {why}"


def adopt(
    settings: Settings,
    version: str | int,
    approvers: Sequence[str],
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> Adoption:
    """Publish the KPIs under ``version``: approvals checked and audited, the build redone aside, checked,
    swapped in, then published with every changed value restated with the change as its cause."""
    now = now or dt.datetime.now(dt.UTC)
    target, current = version_number(version), adopted_version(settings)
    changes = recorded_changes(settings)
    entry = audit.Entry("definitions", statement=f"adopt v{target} (from v{current})", user=account_name(caller_uid()))
    try:
        approvals = _approve(settings, changes, current, target, approvers)
    except (ApprovalError, DefinitionRefused) as exc:
        entry.refuse("refused", str(exc))
        audit.record(settings, entry)
        raise
    moving = changes_between(changes, current, target)
    registry = registry_at(target, changes)
    cause = _cause(moving, current, target, reason)
    if not _swap_in_proposed_build(settings, target, current, registry):
        _rebuild_aside(settings, registry)
    set_adopted(settings, target, now)
    with connect(settings.build_db, read_only=True) as conn:
        start, end = conn.execute("select min(date_day), max(date_day) from marts.dim_dates").fetchall()[0]
    user = entry.get("user")
    append_history(  # before publishing, so that the analyst file carries its own adoption
        settings,
        {
            "event": "adopted",
            "version": f"v{target}",
            "from_version": f"v{current}",
            "at": now.isoformat(),
            "by": user,
            "reason": cause,
            "approvals": [f"{a.user} ({a.role})" for a in approvals],
        },
    )
    report = publish(settings, (start, end), now=now, republish_unchanged=True, cause=cause)
    entry.update(
        allowed=True,
        outcome="adopted",
        reason=cause,
        approvals=[a.__dict__ for a in approvals],
        datasets=["kpis.kpi_daily", "kpis.kpi_monthly", "publish.kpi_restatements"],
        rows=report.restatements,
        publish_id=report.publish_id,
    )
    audit.record(settings, entry)
    return Adoption(target, current, cause, approvals, report)


def _approve(
    settings: Settings, changes: list[DefinitionChange], current: int, target: int, approvers: Sequence[str]
) -> list[Approval]:
    if target == current:
        raise DefinitionRefused(f"v{target} is already adopted")
    base = version_number(load_registry().version)
    if target != base and target not in {c.version for c in changes}:
        raise DefinitionRefused(f"v{target} was never proposed here (dataops definitions propose FILE)")
    moving = changes_between(changes, current, target)
    fixed = {c.label: c.not_per_day() for c in moving if c.not_per_day()}
    if fixed:
        which = "; ".join(f"{label}: {', '.join(paths)}" for label, paths in fixed.items())
        raise DefinitionRefused(
            f"{which} cannot apply from an effective date: the models evaluate it once for every day (per day: "
            f"{', '.join(PER_DAY_DEFINITIONS)}); adopt it as restating history (docs/definitions.md)"
        )
    if target > current and not (proposal_dir(settings, target) / "impact_kpis.parquet").exists():
        raise DefinitionRefused(f"v{target} has no impact report: propose it first")
    needed = required_roles(moving, registry_at(max(current, target), changes), load_policy())
    return check_approvals(settings, approvers, needed)


def _rebuild_aside(settings: Settings, registry: Registry) -> None:
    """Build and check under ``registry`` in a copy, then swap it in: a failure leaves the adopted build."""
    aside = Settings(settings.definitions_dir / "adoptions" / uuid.uuid4().hex[:12])
    _copy_build(settings, aside)
    try:
        build_and_check(aside, registry)
        with connect(aside.build_db) as conn:
            conn.execute("checkpoint")
        os.replace(aside.build_db, settings.build_db)
    finally:
        shutil.rmtree(aside.data_dir, ignore_errors=True)

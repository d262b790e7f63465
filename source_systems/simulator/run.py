"""Run the simulation forward and write what each system holds, plus the truth and the dirt log.

``simulate`` starts a new simulation or continues the one found under ``sources/``; continuing to a
date gives the same systems as simulating to that date in one go. Each day is written idempotently
(replaying a day writes identical rows), and the state is saved last, so an interrupted run is safely
resumed by running again.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from registry.loader import Registry, load_registry
from source_systems.accounting import export as accounting
from source_systems.crm import store as crm_store
from source_systems.erp import store as erp_store
from source_systems.product import EVENTS_DIR
from source_systems.simulator import events, health, usage
from source_systems.simulator.config import SimConfig
from source_systems.simulator.dirt import DirtLog, spoil
from source_systems.simulator.engine import C_ACTIVE, C_PAUSED, DayRecords, Engine
from source_systems.simulator.memory import ordinary_pages
from source_systems.simulator.rng import stream
from source_systems.simulator.state import State, frame
from source_systems.simulator.truth import compute_truth, customer_states, paused_flags
from source_systems.simulator.usage_truth import compute_usage_truth, latent_health_frames
from source_systems.simulator.world import World, build_world

Progress = Callable[[int, int, dt.date], None]


class SimulationError(RuntimeError):
    """The request cannot be honoured against the simulation found on disk."""


@dataclass
class SimulationSummary:
    config: SimConfig
    first_day: dt.date
    through: dt.date
    days_simulated: int
    counts: dict[str, int] = field(default_factory=dict)
    dirt: dict[str, int] = field(default_factory=dict)
    # The product's event stream: lines its collectors delivered in this call, and the time it took to
    # generate and write them (wall clock and this process's CPU time, and of that the kernel's).
    product_lines: int = 0
    product_wall_s: float = 0.0
    product_cpu_s: float = 0.0
    product_kernel_s: float = 0.0


def state_dir(sources: Path) -> Path:
    return sources / "_state"


def existing_config(sources: Path) -> SimConfig | None:
    meta = state_dir(sources) / "meta.json"
    if not meta.exists():
        return None
    return SimConfig.from_json(json.dumps(json.loads(meta.read_text())["config"]))


def simulated_through(sources: Path) -> dt.date | None:
    meta = state_dir(sources) / "meta.json"
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    if data["last_day"] < 0:
        return None
    return dt.date.fromisoformat(data["config"]["start"]) + dt.timedelta(days=data["last_day"])


def reset(sources: Path) -> None:
    """Forget the simulation: remove every system's files and the truth."""
    if sources.exists():
        shutil.rmtree(sources)


def simulate(
    sources: Path,
    through: dt.date,
    config: SimConfig | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Simulate up to and including ``through``, continuing what is already under ``sources``."""
    registry = registry or load_registry()
    found = existing_config(sources)
    if found is not None and config is not None and found != config:
        raise SimulationError(
            f"{sources} already holds a simulation with seed={found.seed}, scale={found.scale}, "
            f"start={found.start}; asked for seed={config.seed}, scale={config.scale}, start={config.start}. "
            "Continue it with the same settings, or reset it first (dataops simulate --reset)."
        )
    cfg = found or config or SimConfig()
    if through < cfg.start:
        raise SimulationError(f"--through {through} is before the simulation start {cfg.start}")
    if found is not None:
        state, _ = State.load(state_dir(sources))
    else:
        state = State()
    last = (through - cfg.start).days
    first_new = state.last_day + 1
    world = build_world(cfg.seed, cfg.scale)
    engine = Engine(cfg, world, state, registry.month_close_business_day)

    erp = erp_store.connect(sources / "erp" / "erp.sqlite")
    crm = crm_store.connect(sources / "crm" / "crm.sqlite")
    exports = sources / "accounting" / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    drift = cfg.drift_date or registry.source_release("accounting", accounting.RENAMING_RELEASE).date
    product = [0, 0.0, 0.0, 0.0]
    try:
        for d in range(first_new, last + 1):
            records = engine.step(d)
            _emit(cfg, engine, records, erp, crm, exports, drift)
            if cfg.product_events:
                wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                product[0] += _product_day(cfg, engine, d, sources.joinpath(*EVENTS_DIR))
                after = resource.getrusage(resource.RUSAGE_SELF)
                product[1] += time.perf_counter() - wall
                product[2] += after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                product[3] += after.ru_stime - before.ru_stime
            if progress:
                progress(d - first_new + 1, last - first_new + 1, cfg.start + dt.timedelta(days=d))
    finally:
        erp.close()
        crm.close()
    _write_truth(sources, cfg, state, registry)
    state.save(state_dir(sources), cfg.to_json())
    return SimulationSummary(
        config=cfg,
        first_day=cfg.start,
        through=through,
        days_simulated=max(0, last - first_new + 1),
        counts=system_counts(sources),
        dirt=_dirt_counts(state),
        product_lines=int(product[0]),
        product_wall_s=float(product[1]),
        product_cpu_s=float(product[2]),
        product_kernel_s=float(product[3]),
    )


def _product_day(cfg: SimConfig, engine: Engine, d: int, root: Path) -> int:
    """What the customers' users did today, as the product's collectors deliver it; the lines written."""
    codes = engine.customer_states()
    h = health.current(engine.s)
    using, holding = codes == C_ACTIVE, np.isin(codes, [C_ACTIVE, C_PAUSED])
    with ordinary_pages():  # a day's fresh arrays, without the kernel's compaction for huge pages
        day = usage.plan(cfg.seed, cfg.start, d, engine.s, engine.w, using, holding, h)
        dirt, lines = events.deliver(cfg, d, engine.s, engine.w, day, root)
    engine.s.append("dirt", dirt)
    return lines


def _write_truth(sources: Path, cfg: SimConfig, state: State, registry: Registry) -> None:
    if state.last_day < 0:
        return
    world = build_world(cfg.seed, cfg.scale)
    keys = np.concatenate(
        [world.acc_crm_id[world.cust_top_account[: world.n_parents]], world.bill_customer_no[world.bill_account < 0]]
    )
    truth_dir = sources / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth = compute_truth(state, registry, cfg.start, world.n_customers, keys)
    truth.kpi_daily.write_parquet(truth_dir / "kpi_daily.parquet", statistics=False)
    truth.kpi_daily_history.write_parquet(truth_dir / "kpi_daily_history.parquet", statistics=False)
    truth.customer_states.write_parquet(truth_dir / "customer_states_daily.parquet", statistics=False)
    state.table("dirt").sort("day", "system", "table", "kind", "key").write_parquet(
        truth_dir / "dirt_log.parquet", statistics=False
    )
    pl.DataFrame({"customer_no": world.bill_customer_no, "customer_key": keys[world.bill_customer]}).write_parquet(
        truth_dir / "bill_to_customers.parquet", statistics=False
    )
    _write_usage_truth(truth_dir, cfg, state, registry, world, keys)


def _write_usage_truth(
    truth_dir: Path, cfg: SimConfig, state: State, registry: Registry, world: World, keys: np.ndarray
) -> None:
    """The product's usage and the latent health behind churn (simulator/usage_truth.py)."""
    n = state.last_day + 1
    states, delinquent = customer_states(state, registry, world.n_customers, n)
    latent, churn = latent_health_frames(state, cfg.start, world.n_customers, keys, states)
    latent.write_parquet(truth_dir / "customer_latent_health.parquet", statistics=False)
    churn.write_parquet(truth_dir / "churn_events.parquet", statistics=False)
    if not cfg.product_events:
        return
    usage = compute_usage_truth(
        state,
        registry,
        cfg.start,
        world.n_customers,
        keys,
        world.acc_crm_id,
        states,
        delinquent,
        paused_flags(state, world.n_customers, n),
    )
    for name, frame_ in (
        ("usage_users_daily", usage.users_daily),
        ("usage_accounts_daily", usage.accounts_daily),
        ("usage_customers_daily", usage.customers_daily),
        ("usage_kpi_daily", usage.kpi_daily),
        ("usage_kpi_daily_history", usage.kpi_daily_history),
        ("usage_sessions", usage.sessions),
        ("usage_sessions_daily", usage.sessions_daily),
    ):
        frame_.write_parquet(truth_dir / f"{name}.parquet", statistics=False)


def recompute_truth(sources: Path, registry: Registry | None = None) -> None:
    """Recompute the truth files under a (changed) registry, from the simulation's own ledger."""
    cfg = existing_config(sources)
    if cfg is None:
        raise SimulationError(f"no simulation under {sources}")
    state, _ = State.load(state_dir(sources))
    _write_truth(sources, cfg, state, registry or load_registry())


def truth_kpis(sources: Path, registry_on: Callable[[dt.date], Registry]) -> pl.DataFrame:
    """The truth's daily KPIs (final values) with each day computed under the registry in effect on it.

    ``registry_on`` gives the definitions of a day (registry/versions.py ``registry_at(..., day=)``): days
    whose definitions are the same version share one computation.
    """
    cfg = existing_config(sources)
    if cfg is None:
        raise SimulationError(f"no simulation under {sources}")
    state, _ = State.load(state_dir(sources))
    world = build_world(cfg.seed, cfg.scale)
    keys = np.concatenate(
        [world.acc_crm_id[world.cust_top_account[: world.n_parents]], world.bill_customer_no[world.bill_account < 0]]
    )
    days = [cfg.start + dt.timedelta(days=d) for d in range(state.last_day + 1)]
    by_version: dict[str, tuple[Registry, list[dt.date]]] = {}
    for day in days:
        registry = registry_on(day)
        by_version.setdefault(repr(registry.raw), (registry, []))[1].append(day)
    frames = [
        compute_truth(state, registry, cfg.start, world.n_customers, keys)
        .kpi_daily.filter(pl.col("date").is_in(on))
        .with_columns(definition_version=pl.lit(registry.version))
        for registry, on in by_version.values()
    ]
    return pl.concat(frames).sort("date", "kpi")


def _emit(
    cfg: SimConfig,
    engine: Engine,
    records: DayRecords,
    erp: sqlite3.Connection,
    crm: sqlite3.Connection,
    exports: Path,
    drift: dt.date,
) -> None:
    d = records.day
    date = cfg.start + dt.timedelta(days=d)
    state = engine.s
    log = DirtLog(d)
    rng = stream(cfg.seed, d, "dirt")
    inserts = {t: spoil(t, df, cfg.dirt, rng, state, log, date) for t, df in sorted(records.inserts.items())}
    drifted = date >= drift
    if date == drift:
        log.add("acct.invoices", ["*"], "amount->gross_amount,+po_number", "schema_drift", "noise")
    payments = inserts.get("acct.payments")
    if payments is not None:
        held = payments["_held_back"] == "true"
        if held.any():
            assert records.held_back_arrival is not None
            log.add("acct.payments", payments.filter(held)["payment_no"].to_list(), "*", "held_back", "noise")
            keep = payments.with_row_index("line").with_columns(pl.col("line").cast(pl.Int64))
            state.append(
                "pending_v2",
                frame(
                    "pending_v2",
                    day=[records.held_back_arrival] * keep.height,
                    export_day=[d] * keep.height,
                    line=keep["line"],
                    held_back=held,
                    **{c: keep[c] for c in accounting.COLUMNS["payments"]},
                ),
            )
        inserts["acct.payments"] = payments.filter(~held).drop("_held_back")
    with erp:
        erp_store.write(erp, inserts, records.updates)
    with crm:
        crm_store.write(crm, inserts, records.updates)
    tables = {t.split(".")[1]: df for t, df in inserts.items() if t.startswith("acct.")}
    accounting.write_day(exports, date, tables, drifted=drifted)
    reexports = state.take_pending("pending_v2", d)
    for (export_day,), rows in reexports.sort("export_day", "line").group_by(["export_day"], maintain_order=True):
        accounting.write_reexport(
            exports,
            cfg.start + dt.timedelta(days=int(export_day)),
            "payments",
            rows.select(accounting.COLUMNS["payments"]),
            generated_on=date,
        )
    state.append("dirt", log.frame())


def system_counts(sources: Path) -> dict[str, int]:
    """Rows each system holds now (current versions), for the summary."""
    counts: dict[str, int] = {}
    for system, path, tables in (
        ("erp", sources / "erp" / "erp.sqlite", erp_store.TABLES),
        ("crm", sources / "crm" / "crm.sqlite", tuple(crm_store.OBJECTS)),
    ):
        if path.exists():
            with sqlite3.connect(path) as conn:
                for t in tables:
                    counts[f"{system}.{t}"] = conn.execute(f"select count(*) from {t}").fetchone()[0]
    events = sources.joinpath(*EVENTS_DIR)
    if events.exists():
        manifests = [json.loads(m.read_text()) for m in events.glob("date=*/hour=*/manifest.json")]
        counts["product.event_hours"] = len(manifests)
        counts["product.event_lines"] = sum(o["lines"] for m in manifests for o in m["objects"])
    exports = sources / "accounting" / "exports"
    if exports.exists():
        days = sorted(p for p in exports.iterdir() if p.is_dir() and not p.name.startswith("."))
        counts["accounting.export_days"] = len(days)
        for day in days:
            manifest = json.loads((day / "manifest.json").read_text())
            for entry in manifest["files"]:
                key = f"accounting.{entry['table']}"
                counts[key] = counts.get(key, 0) + int(entry["rows"])
    return counts


def _dirt_counts(state: State) -> dict[str, int]:
    dirt = state.table("dirt")
    if dirt.height == 0:
        return {}
    return {f"{k}:{c}": n for k, c, n in dirt.group_by("kind", "class").len().sort("kind").iter_rows()}

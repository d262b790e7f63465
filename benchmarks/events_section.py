"""The event stream's section of ``make bench`` (``python -m benchmarks --events SCALE:DAYS``).

Over a window of the product's events (its own simulation, beside the systems of record), each step in its own
process (``benchmarks.worker``) so that its peak memory is its own:

* the simulator writing the stream (lines per second, by wall clock and CPU);
* ingestion: every delivered object landed in daily micro-batches (``dataops.ingest.events``);
* the model: ``dbt build`` of the product's models and their tests (``usage_models.PRODUCT_MODELS``), after
  every other source was ingested and every other model built (untimed);
* the floor: the SQL that build compiled for those models, in order, in one DuckDB connection over the same
  landed events and the same upstream tables; and whether both give the same usage KPIs;
* the truth: the usage KPIs built against the simulator's, every day and KPI. A difference fails the run.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import shutil
import time
from pathlib import Path
from typing import Any

USAGE_KPIS = "select date_day, kpi_name, value from kpis.kpi_usage_daily"


def parse(value: str) -> tuple[float, int]:
    """``SCALE:DAYS`` (e.g. ``10:31``) as (scale, days)."""
    scale, _, days = value.partition(":")
    if not days:
        raise ValueError(f"--events wants SCALE:DAYS, e.g. 10:31, not {value!r}")
    return float(scale), int(days)


# ------------------------------------------------------------------ the section, run from benchmarks.run
def section(work: Path, scale: float, days: int, end: dt.date, seed: int) -> dict[str, Any]:
    """Every step of the section over ``days`` days ending ``end``; each a task in its own process."""
    from benchmarks.run import say, task

    start = end - dt.timedelta(days=days - 1)
    root = work / f"events-SF{scale:g}-{days}d"
    shutil.rmtree(root, ignore_errors=True)
    data_dir, floor_dir = root / "data", root / "floor"
    window: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat()}
    say(f"events SF {scale:g}, {days} days ({start}..{end}): simulating the sources and the product's stream")
    simulated = task("events_simulate", data_dir=str(data_dir), scale=scale, seed=seed, **window)
    say(f"  {simulated['lines']:,} lines at {simulated['lines_per_s_cpu']:,.0f}/s of CPU")
    say("  ingestion: every object in daily micro-batches")
    ingested = task("events_ingest", data_dir=str(data_dir), batch_hours=24)
    say(f"  {ingested['landed']:,} events landed in {ingested['wall_s']:.1f} s, peak {ingested['peak_rss'] >> 20} MiB")
    say("  every other source ingested and every other model built (untimed)")
    task("events_upstream", data_dir=str(data_dir), floor_dir=str(floor_dir), **window)
    say("  the model: dbt build of the product's models and their tests")
    model = task("events_model", data_dir=str(data_dir), target=str(root / "dbt_target"), **window)
    say(f"  {model['events']:,} events in {model['wall_s']:.1f} s, success {model['success']}")
    floor = task("events_floor", floor_dir=str(floor_dir), target=str(root / "dbt_target"))
    say(f"  floor {floor['wall_s']:.1f} s ({floor['models']} models)")
    build_db = str(data_dir / "warehouse" / "build.duckdb")
    same = task("compare", pipeline_db=build_db, floor_db=str(floor_dir / "build.duckdb"), query=USAGE_KPIS)
    truth = task("events_truth", data_dir=str(data_dir))
    say(f"  usage KPIs: floor identical {same['identical']}, equal to the truth {truth['identical']}")
    return {
        "scale": scale,
        "days": days,
        "window": [start.isoformat(), end.isoformat()],
        "simulation": simulated,
        "ingestion": ingested,
        "model": model,
        "floor": floor,
        "ratio": model["wall_s"] / max(floor["wall_s"], 1e-9),
        "kpis_compared": same,
        "truth": truth,
    }


def ok(events: dict[str, Any]) -> bool:
    """The section's verdict: the model built, and its usage KPIs equal both the floor's and the truth's."""
    return bool(events["model"]["success"] and events["kpis_compared"]["identical"] and events["truth"]["identical"])


def table(events: dict[str, Any]) -> list[str]:
    """The section's rows in the result's Markdown."""
    sim, ing, model, floor = events["simulation"], events["ingestion"], events["model"], events["floor"]
    mib = 1 << 20
    n = model["events"]
    lines = [
        f"### The event stream, SF {events['scale']:g}, {events['days']} days "
        f"({events['window'][0]}..{events['window'][1]})",
        "",
        "| step | events | wall s | CPU s | events/s (wall) | events/s (CPU) | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| simulator writes the stream (lines) | {sim['lines']:,} | {sim['product_wall_s']:.1f} "
        f"| {sim['product_cpu_s']:.1f} | {sim['lines_per_s_wall']:,.0f} | {sim['lines_per_s_cpu']:,.0f} "
        f"| {sim['peak_rss'] // mib:,} |",
        f"| ingestion ({ing['batches']} daily micro-batches; lines read {ing['lines']:,}) | {ing['landed']:,} "
        f"| {ing['wall_s']:.1f} | {ing['cpu_s']:.1f} | {ing['landed'] / max(ing['wall_s'], 1e-9):,.0f} "
        f"| {ing['landed'] / max(ing['cpu_s'], 1e-9):,.0f} | {ing['peak_rss'] // mib:,} |",
        f"| **the model** (dbt build of the product's models and tests) | {n:,} | **{model['wall_s']:.1f}** "
        f"| {model['cpu_s']:.1f} | {n / max(model['wall_s'], 1e-9):,.0f} | {n / max(model['cpu_s'], 1e-9):,.0f} "
        f"| {model['peak_rss'] // mib:,} |",
        f"| **floor** (the same models' SQL, one DuckDB connection) | {n:,} | **{floor['wall_s']:.1f}** | "
        f"| {n / max(floor['wall_s'], 1e-9):,.0f} | | {floor['peak_rss'] // mib:,} |",
        f"| **model / floor** | | **{events['ratio']:.1f}x** | | | | |",
        "",
        f"Usage KPIs of the model and the floor identical: {events['kpis_compared']['identical']} "
        f"({events['kpis_compared']['rows_pipeline']} rows). Equal to the simulator's truth on every day and KPI: "
        f"{events['truth']['identical']} ({events['truth']['rows']} rows"
        f"{'' if events['truth']['identical'] else '; differences: ' + json.dumps(events['truth']['differences'])}"
        f"). dbt's split: {', '.join(f'{k} {v:.1f} s' for k, v in model['dbt_nodes_s'].items())}.",
        "",
    ]
    return lines


# ------------------------------------------------------------------ the tasks, each in its own process
def _settings(data_dir: str) -> Any:
    from dataops.core.settings import Settings

    return Settings(Path(data_dir))


def simulate_task(args: dict[str, Any]) -> dict[str, Any]:
    """The sources with the product's stream over the window (the systems of record too: the model joins them)."""
    from source_systems.product import EVENTS_DIR
    from source_systems.simulator.config import SimConfig
    from source_systems.simulator.run import simulate

    sources = _settings(args["data_dir"]).sources_dir
    start, end = dt.date.fromisoformat(args["start"]), dt.date.fromisoformat(args["end"])
    started = time.perf_counter()
    summary = simulate(sources, end, SimConfig(seed=int(args["seed"]), scale=float(args["scale"]), start=start))
    gz = sum(p.stat().st_size for p in sources.joinpath(*EVENTS_DIR).rglob("*.gz"))
    return {
        "wall_s": time.perf_counter() - started,
        "lines": summary.product_lines,
        "product_wall_s": summary.product_wall_s,
        "product_cpu_s": summary.product_cpu_s,
        "lines_per_s_wall": summary.product_lines / max(summary.product_wall_s, 1e-9),
        "lines_per_s_cpu": summary.product_lines / max(summary.product_cpu_s, 1e-9),
        "gzip_bytes": gz,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def ingest_task(args: dict[str, Any]) -> dict[str, Any]:
    """Every delivered object, one batch per ``batch_hours`` of delivery (benchmarks.events_ingest)."""
    from benchmarks.events_ingest import ingest_all

    result = ingest_all(Path(args["data_dir"]), int(args["batch_hours"]))
    return result | {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def upstream_task(args: dict[str, Any]) -> dict[str, Any]:
    """Untimed: every other source ingested and every model the product's do not reach built; then the warehouse
    as it is copied for the floor (the product's models read it and the same landed events)."""
    from benchmarks.usage_models import build_upstream, ingest_sources

    settings = _settings(args["data_dir"])
    start, end = dt.date.fromisoformat(args["start"]), dt.date.fromisoformat(args["end"])
    ingest_sources(settings, start, end)
    build_upstream(settings, (args["start"], args["end"]))
    floor_dir = Path(args["floor_dir"])
    floor_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.build_db, floor_dir / "build.duckdb")  # named like the build: "build"."schema"."x"
    return {}


def model_task(args: dict[str, Any]) -> dict[str, Any]:
    """Timed: ``dbt build`` of the product's models and their tests, its compiled SQL kept in ``target``."""
    import duckdb

    from benchmarks.usage_models import CAUTIOUS, PRODUCT_MODELS
    from benchmarks.worker import _dbt_split
    from dataops.transform.runner import run_dbt

    settings = _settings(args["data_dir"])
    target = Path(args["target"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = run_dbt([*CAUTIOUS, *PRODUCT_MODELS], settings, window=(args["start"], args["end"]), target=target)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not result.success:
        raise RuntimeError(f"the product's models did not build:\n{result.output[-3000:]}")
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        row = conn.execute("select count(*) from staging.stg_product__events").fetchone()
    return {
        "success": result.success,
        "events": int(row[0]) if row else 0,
        "wall_s": wall,
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "peak_rss": after.ru_maxrss * 1024,  # the dbt process, this task's only child
        "models": sum(1 for r in result.results if r["unique_id"].startswith("model.")),
        "dbt_nodes_s": _dbt_split([target]),
    }


def floor_task(args: dict[str, Any]) -> dict[str, Any]:
    """The floor: the models the build ran, their SQL as it compiled it, in order, in one DuckDB connection over
    the warehouse as it was before them."""
    import duckdb

    from benchmarks.probe import RssSampler
    from benchmarks.worker import floor_result, run_models  # worker imports this module: at call time
    from dataops.core.warehouse import Limits

    target = Path(args["target"])
    manifest = json.loads((target / "manifest.json").read_text())
    built = {r["unique_id"] for r in json.loads((target / "run_results.json").read_text())["results"]}
    plan = _in_order({k: n for k, n in manifest["nodes"].items() if k in built and n["resource_type"] == "model"})
    limits = Limits()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with RssSampler() as sampler:
        conn = duckdb.connect(
            str(Path(args["floor_dir"]) / "build.duckdb"),
            config={"memory_limit": limits.memory_limit, "threads": limits.threads},
        )
        conn.execute("set TimeZone = 'UTC'")  # as the dbt profile and the platform's connections do
        for schema in sorted({node["relation_name"].rsplit(".", 1)[0] for node in plan}):
            conn.execute(f"create schema if not exists {schema}")
        models = [
            {
                "name": n["name"],
                "materialized": n["config"]["materialized"],
                "relation": n["relation_name"],
                "sql": n["compiled_code"],
            }
            for n in plan
        ]
        run_models(conn, models, timings)
        conn.close()
    return floor_result(started, sampler.peak(), len(plan), timings)


def _in_order(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The models, each after the ones among them it reads."""
    order: list[str] = []

    def visit(key: str) -> None:
        if key in order:
            return
        for parent in models[key]["depends_on"]["nodes"]:
            if parent in models:
                visit(parent)
        order.append(key)

    for key in sorted(models):
        visit(key)
    return [models[k] for k in order]


def truth_task(args: dict[str, Any]) -> dict[str, Any]:
    """The built usage KPIs against the simulator's truth (``truth/usage_kpi_daily.parquet``), every day and KPI."""
    import duckdb
    import polars as pl

    settings = _settings(args["data_dir"])
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        got = conn.sql("select date_day as date, kpi_name as kpi, value from kpis.kpi_usage_daily").pl()
    truth = pl.read_parquet(settings.sources_dir / "truth" / "usage_kpi_daily.parquet").rename({"value": "truth"})
    joined = truth.join(got, on=["date", "kpi"], how="full", coalesce=True)
    differ = joined.filter(
        (pl.col("truth") != pl.col("value")) | pl.col("truth").is_null() | pl.col("value").is_null()
    ).sort("date", "kpi")
    return {
        "identical": differ.height == 0 and got.height > 0,
        "rows": got.height,
        "rows_truth": truth.height,
        "differences": [[str(v) for v in row] for row in differ.head(5).iter_rows()],
        "differing_rows": differ.height,
    }


TASKS = {
    "events_simulate": simulate_task,
    "events_ingest": ingest_task,
    "events_upstream": upstream_task,
    "events_model": model_task,
    "events_floor": floor_task,
    "events_truth": truth_task,
}

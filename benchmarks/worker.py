"""One measurement per process, so that each peak memory is its own: ``python -m benchmarks.worker TASK JSON``.

The task's result is written as JSON to the ``out`` path of its arguments. Tasks: ``simulate``, ``pipeline``
(one Dagster run of the platform's daily job over a date range, as ``dataops run``/``backfill`` launch it),
``dagster_alone`` (the same run with every step idle), ``floor_prepare`` (untimed: the raw layer out to
Parquet, the dbt project compiled), ``floor`` (the compiled SQL in one DuckDB connection) and ``compare``
(the KPIs of the floor and of the pipeline); and the event stream's section's tasks (``events_*``,
benchmarks/events_section.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.events_section import TASKS as EVENT_TASKS
from benchmarks.probe import RssSampler, Span, StageProbe

INGEST_STAGES = ("extract", "land", "load", "validate")
STAGES = (*INGEST_STAGES, "dbt", "checks", "publish", "other")
JOBS = ("daily_elt_job", "build_job")  # the landing of the window, then the build that follows it
STEP_ENDS = {"STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"}  # stored event type values


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def simulate(args: dict[str, Any]) -> dict[str, Any]:
    from source_systems.simulator.config import SimConfig
    from source_systems.simulator.run import simulate as run_simulation

    sources = Path(args["data_dir"]) / "sources"
    # The systems of record only: the pipeline does not ingest the product's event stream yet.
    config = SimConfig(
        seed=int(args.get("seed", 42)), scale=float(args["scale"]), start=_date(args["start"]), product_events=False
    )
    started = time.perf_counter()
    with RssSampler() as sampler:
        summary = run_simulation(sources, _date(args["through"]), config)
    return {"wall_s": time.perf_counter() - started, "peak_rss": sampler.peak(), "days": summary.days_simulated}


def _exclusive(spans: list[Span]) -> dict[str, float]:
    """Seconds per ingest stage; a stage nested in another (validate inside load) counts only once."""
    totals: dict[str, float] = defaultdict(float)
    for span in spans:
        if span.stage in INGEST_STAGES:
            totals[span.stage] += span.end - span.start
    loads = [s for s in spans if s.stage == "load"]
    for span in spans:
        if span.stage == "validate" and any(o.start <= span.start and span.end <= o.end for o in loads):
            totals["load"] -= span.end - span.start
    return dict(totals)


def stage_times(
    spans: list[Span], by_step_stage: dict[str, list[tuple[float, float]]]
) -> tuple[dict[str, float], dict[str, list[tuple[float, float]]]]:
    """Seconds and intervals per stage: ingestion's from the probe's spans, the rest from the run's steps.

    The volume breakers run inside their ingestion steps (docs/decisions/0013), so their spans count as
    checks, not as the orchestration around the stages."""
    seconds = _exclusive(spans)
    intervals = {s: [(x.start, x.end) for x in spans if x.stage == s] for s in INGEST_STAGES}
    for stage in ("dbt", "checks", "publish", "other"):
        intervals[stage] = list(by_step_stage.get(stage, []))
        seconds[stage] = sum(b - a for a, b in intervals[stage])
    breakers = [(x.start, x.end) for x in spans if x.stage == "breaker"]
    intervals["checks"] += breakers
    seconds["checks"] += sum(b - a for a, b in breakers)
    return seconds, intervals


def _step_stage(step_key: str, is_check: bool) -> str:
    # dbt's tests and the volume breakers are asset checks run inside their asset's step
    if step_key == "enterprise_model":
        return "dbt"
    if step_key.startswith("ingest_") or step_key == "lake__extracts":  # the landing, then a load per source
        return "ingest"
    if is_check:
        return "checks"
    if step_key.startswith("publish"):
        return "publish"
    if step_key.startswith("simulation"):
        return "simulation"
    return "other"  # e.g. the egress step after publishing (its three assets side by side: decision 0096)


def _dbt_split(targets: list[Path]) -> dict[str, float]:
    """Seconds per dbt node type (summed over its threads), from run_results.json."""
    split: dict[str, float] = defaultdict(float)
    for target in targets:
        results = target / "run_results.json"
        if results.exists():
            for node in json.loads(results.read_text())["results"]:
                split[node["unique_id"].split(".")[0]] += node["execution_time"]
    return {k: round(v, 3) for k, v in split.items()}


def run_records(run_ids: list[str], page: int = 10_000) -> list[Any]:
    """Every event the runs wrote to the Dagster instance, in order, read back once after the wall clock stops
    (30,000 of them take seconds to read): the steps' times and the event counts both come from them."""
    import dagster as dg

    records: list[Any] = []
    with dg.DagsterInstance.get() as instance:
        for run_id in run_ids:
            cursor = None
            while True:
                batch = instance.get_records_for_run(run_id, cursor=cursor, limit=page)
                records += batch.records
                if not batch.has_more:
                    break
                cursor = batch.cursor
    return records


def event_counts(records: list[Any]) -> dict[str, int]:
    """Events per type, most first: each one is a write to the instance's SQLite files, and on range runs
    they, not the data, are most of the cost (docs/performance.md)."""
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        event = record.event_log_entry.dagster_event
        counts[event.event_type.name if event is not None else "LOG_MESSAGE"] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def run_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    """The tags of a measured run: one run over the range, as ``dataops backfill`` launches it."""
    return {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
        "dataops/launched_by": "benchmark",
        # A fresh window's first month-start billing day has no month of history for the volume breaker
        # to compare with; the benchmark measures cost, so it lets spikes through with the documented tag.
        "dataops/allow_volume_spike": "all",
    }


def step_intervals(records: list[Any]) -> tuple[dict[str, tuple[float, float]], set[str]]:
    """Each step's start and end (from its events), and the steps that evaluated asset checks."""
    opened: dict[str, float] = {}
    steps: dict[str, tuple[float, float]] = {}
    check_steps: set[str] = set()
    for record in records:
        entry = record.event_log_entry
        key = str(entry.step_key)
        kind = entry.dagster_event.event_type_value if entry.dagster_event is not None else ""
        if kind == "ASSET_CHECK_EVALUATION":
            check_steps.add(key)
        elif kind == "STEP_START":
            opened[key] = entry.timestamp
        elif kind in STEP_ENDS and key in opened:
            steps[key] = (opened[key], entry.timestamp)
    return steps, check_steps


def pipeline(args: dict[str, Any]) -> dict[str, Any]:
    """One run of the daily job over [start, end] on the data directory's own Dagster instance."""
    data_dir = Path(args["data_dir"])
    start, end = _date(args["start"]), _date(args["end"])
    env = {"DATAOPS_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "dagster_home")}
    os.environ.update(env)
    profiler = None
    if args.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.02)
    probe = StageProbe()
    wall_start = time.time()
    with RssSampler() as sampler:
        if profiler is not None:
            profiler.start()
        import dagster as dg

        from application.mock_sources import crm_environment
        from application.runs import QUIET
        from dataops.core.settings import Settings

        probe.install()
        crm = crm_environment(Settings.from_env())  # the simulated CRM, served as a demo's run serves it
        crm.__enter__()
        definitions = platform_definitions()
        launched = time.time()
        with dg.DagsterInstance.get() as instance:
            resources: dict[str, Any] = {}
            if args.get("max_quarantine_rate") is not None:  # the resource's config is replaced as a whole
                platform = {"data_dir": str(data_dir), "max_quarantine_rate": float(args["max_quarantine_rate"])}
                resources = {"resources": {"platform": {"config": platform}}}
            ops: dict[str, Any] = {}
            if args.get("rebuild_unchanged"):  # run dbt even over an unchanged build (docs/decisions/0020)
                ops = {"ops": {"enterprise_model": {"config": {"rebuild_unchanged": True}}}}
            results = run_landing_and_build(
                definitions, instance, run_tags(start, end), [QUIET | resources, QUIET | resources | ops]
            )
        crm.__exit__(None, None, None)
        if profiler is not None:
            profiler.stop()
        dbt_targets = [Settings.from_env().dbt_runs_dir / r.run_id for r in results]  # the runs' dbt artefacts
    wall_end = time.time()
    probe.remove()
    records = run_records([r.run_id for r in results])
    steps, check_steps = step_intervals(records)
    by_step_stage: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, interval in steps.items():
        by_step_stage[_step_stage(key, key in check_steps)].append(interval)
    seconds, intervals = stage_times(probe.spans, by_step_stage)
    stages = {
        s: {"seconds": round(seconds.get(s, 0.0), 3), "peak_rss": sampler.peak(intervals[s]) if intervals[s] else 0}
        for s in STAGES
    }
    ingest_steps = sum(b - a for a, b in by_step_stage.get("ingest", []))
    pandera: dict[str, dict[str, float]] = {}
    validate_spans = [s for s in probe.spans if s.stage == "validate"]
    check_spans = by_step_stage.get("checks", [])
    for span in (s for s in probe.spans if s.stage == "pandera"):
        where = "validate" if any(v.start <= span.start <= v.end for v in validate_spans) else "checks"
        if where == "checks" and not any(a <= span.start <= b for a, b in check_spans):
            where = "other"
        entry_ = pandera.setdefault(where, {"rows": 0, "seconds": 0.0, "calls": 0})
        entry_["rows"] += span.rows
        entry_["seconds"] += span.end - span.start
        entry_["calls"] += 1
    if profiler is not None:
        out = Path(args["profile"])
        html = profiler.output_html()
        if len(html) < 20_000_000:  # a long run's page gets too big to keep beside the result
            out.with_name(out.name + ".html").write_text(html)
        tree = profiler.output_text(unicode=False, color=False, show_all=False)
        flat = profiler.output_text(unicode=False, color=False, show_all=True, flat=True)
        out.with_name(out.name + ".txt").write_text(f"{tree}\n\nSelf time per function:\n{flat[:20000]}")
    return run_summary(results, records, steps, (start, end), (wall_start, launched, wall_end)) | {
        "ingest_steps_s": round(ingest_steps, 3),
        "peak_rss": sampler.peak(),
        "maxrss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "maxrss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "stages": stages,
        "pandera": pandera,
        "dbt_nodes_s": _dbt_split(dbt_targets),  # per node type, summed over dbt's threads
        "dbt_targets": [str(t) for t in dbt_targets if t.exists()],
    }


def run_landing_and_build(
    definitions: Any, instance: Any, tags: dict[str, str], run_configs: list[dict[str, Any]]
) -> list[Any]:
    """The window's landing run, then (when it succeeded) the build run its sensor would start, in this process,
    as ``dataops run``/``backfill`` run them (docs/decisions/0035)."""
    from orchestration.defs.automation.sensors import build_request
    from orchestration.lib.nothing_new import nothing_new

    landing = definitions.resolve_job_def(JOBS[0]).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False, run_config=run_configs[0]
    )
    landed = instance.get_run_by_id(landing.run_id)
    forced = bool(run_configs[1].get("ops"))  # dbt run anyway: the build runs whatever was landed
    if not landing.success or (
        nothing_new(instance, landing.run_id) and not forced
    ):  # no build follows (decision 0057)
        return [landing]
    build_tags = build_request(landed).tags
    build = definitions.resolve_job_def(JOBS[1]).execute_in_process(
        instance=instance, tags=build_tags, raise_on_error=False, run_config=run_configs[1]
    )
    return [landing, build]


def platform_definitions() -> Any:
    """The platform's definitions, loaded as its entry points load them: in the platform's environment
    (``platform_values``: the data directory's instance created with the platform's config, on PostgreSQL its
    driver's URL and batched event writes, one planned event per asset, decision 0014)."""
    from application.runs import platform_values
    from dataops.core.settings import Settings

    os.environ.update(platform_values(Settings.from_env()))
    from orchestration.definitions import defs

    return defs()


def run_summary(
    results: list[Any],
    records: list[Any],
    steps: dict[str, tuple[float, float]],
    window: tuple[dt.date, dt.date],
    clock: tuple[float, float, float],
) -> dict[str, Any]:
    """What every measured run reports: its window, outcome, times and events. ``clock`` is the wall time
    at the start, at launch and at the end."""
    from application.runs import run_failures

    (start, end), (wall_start, launched, wall_end) = window, clock
    failures, failed_checks = [], []
    for result in results:
        failed = run_failures(result)
        failures += failed[0]
        failed_checks += failed[1]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "days": (end - start).days + 1,
        "runs": len(results),
        # a landing alone succeeded only when it brought nothing new (run_landing_and_build: no build follows)
        "success": bool(results) and all(r.success for r in results),
        "nothing_new": len(results) == 1 and results[0].success,
        "failures": [failure[:500] for failure in failures],
        "failed_checks": failed_checks,
        "wall_s": round(wall_end - wall_start, 3),
        "startup_s": round(launched - wall_start, 3),  # imports, definitions (dbt manifest), instance
        # from launch to the first step: the run's plan, incl. one planned event per asset *and partition*
        "planning_s": round(min((a for a, _ in steps.values()), default=launched) - launched, 3),
        "steps": {k: round(b - a, 3) for k, (a, b) in sorted(steps.items(), key=lambda kv: kv[1][0])},
        "events": event_counts(records),
    }


def dagster_alone(args: dict[str, Any]) -> dict[str, Any]:
    """The same job over the same window on a new instance of the platform's kind, every step idle
    (``benchmarks/idle.py``): what Dagster costs around the work, whatever the work costs."""
    data_dir, home = Path(args["data_dir"]), Path(args["dagster_home"])
    start, end = _date(args["start"]), _date(args["end"])
    os.environ.update({"DATAOPS_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home)})
    wall_start = time.time()
    import dagster as dg

    from application.runs import QUIET
    from benchmarks.idle import idle_definitions

    definitions = idle_definitions(platform_definitions(), JOBS)
    launched = time.time()
    with dg.DagsterInstance.get() as instance:
        results = run_landing_and_build(definitions, instance, run_tags(start, end), [dict(QUIET), dict(QUIET)])
    wall_end = time.time()
    records = run_records([r.run_id for r in results])
    steps, _ = step_intervals(records)
    return run_summary(results, records, steps, (start, end), (wall_start, launched, wall_end))


def floor_prepare(args: dict[str, Any]) -> dict[str, Any]:
    """Untimed: the raw and reference layer to Parquet, and every model's SQL as the full build's dbt run
    compiled it (its manifest; models are built from scratch on a first build), else ``dbt compile``."""
    import duckdb

    from dataops.core.settings import Settings

    data_dir, bench = Path(args["data_dir"]), Path(args["floor_dir"])
    inputs = bench / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(data_dir)
    tables = []
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        names = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'reference') and table_type = 'BASE TABLE' order by 1, 2"
        ).fetchall()
        for schema, table in names:
            path = inputs / f"{schema}.{table}.parquet"
            conn.execute(f"copy {schema}.{table} to '{path}' (format parquet)")
            tables.append({"schema": schema, "table": table, "path": str(path)})
    target = Path(args["dbt_target"]) if args.get("dbt_target") else bench / "dbt_target"
    if not (target / "manifest.json").exists():
        _compile(settings, target, args["start"], args["end"])
    manifest = json.loads((target / "manifest.json").read_text())
    models = {k: n for k, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    if not all(n.get("compiled_code") for n in models.values()):
        raise RuntimeError(f"{target}/manifest.json lacks the compiled SQL of some models")
    order: list[str] = []

    def visit(key: str) -> None:
        if key in order or key not in models:
            return
        for parent in models[key]["depends_on"]["nodes"]:
            visit(parent)
        order.append(key)

    for key in sorted(models):
        visit(key)
    plan = [
        {
            "name": models[k]["name"],
            "schema": models[k]["schema"],
            "relation": models[k]["relation_name"],
            "materialized": models[k]["config"]["materialized"],
            "sql": models[k]["compiled_code"],
        }
        for k in order
    ]
    (bench / "plan.json").write_text(json.dumps({"tables": tables, "models": plan}, indent=1))
    return {"tables": len(tables), "models": len(plan), "sql_from": str(target)}


def _compile(settings: Any, target: Path, start: str, end: str) -> None:
    """dbt compile as a full refresh with the run's vars and window (when the build's own SQL is missing)."""
    from dataops.core.settings import DBT_PROJECT_DIR
    from dataops.transform.project import dbt_environment, dbt_executable, registry_vars, window_environment
    from registry.loader import load_registry

    env = {k: v for k, v in os.environ.items() if k not in ("DATAOPS_WINDOW_START", "DATAOPS_WINDOW_END")}
    env |= dbt_environment(settings) | window_environment(start, end)
    command = [
        dbt_executable(),
        "compile",
        "--full-refresh",
        "--select",
        "resource_type:model",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--vars",
        registry_vars(load_registry()),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt compile failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def floor(args: dict[str, Any]) -> dict[str, Any]:
    """The floor: the landed raw layer and the compiled models, in order, in one DuckDB connection."""
    import duckdb

    from dataops.core.warehouse import Limits

    bench = Path(args["floor_dir"])
    plan = json.loads((bench / "plan.json").read_text())
    db = bench / "build.duckdb"  # named like the build warehouse: the compiled SQL says "build"."schema"."x"
    db.unlink(missing_ok=True)
    limits = Limits()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with RssSampler() as sampler:
        conn = duckdb.connect(str(db), config={"memory_limit": limits.memory_limit, "threads": limits.threads})
        conn.execute("set TimeZone = 'UTC'")  # as the dbt profile and the platform's connections do
        load_start = time.perf_counter()
        for schema in {t["schema"] for t in plan["tables"]} | {m["schema"] for m in plan["models"]}:
            conn.execute(f'create schema if not exists "{schema}"')
        for table in plan["tables"]:
            name, path = f'"{table["schema"]}"."{table["table"]}"', table["path"]
            conn.execute(f"create table {name} as select * from read_parquet('{path}')")
        timings["load raw from Parquet"] = time.perf_counter() - load_start
        run_models(conn, plan["models"], timings)
        conn.close()
    return floor_result(started, sampler.peak(), len(plan["models"]), timings)


def run_models(conn: Any, models: list[dict[str, Any]], timings: dict[str, float]) -> None:
    """Each compiled model (name, materialized, relation, sql), in order, timed into ``timings``."""
    for model in models:
        kind = "view" if model["materialized"] == "view" else "table"
        model_start = time.perf_counter()
        conn.execute(f"create or replace {kind} {model['relation']} as {model['sql']}")
        timings[model["name"]] = time.perf_counter() - model_start


def floor_result(started: float, peak_rss: int, models: int, timings: dict[str, float]) -> dict[str, Any]:
    return {
        "wall_s": round(time.perf_counter() - started, 3),
        "peak_rss": peak_rss,
        "models": models,
        "slowest": dict(sorted(((k, round(v, 3)) for k, v in timings.items()), key=lambda kv: -kv[1])[:8]),
    }


def _rows_by_name(db: str, query: str) -> list[tuple[Any, ...]]:
    """The query's rows with their columns in name order, sorted: an enforced contract orders a mart's columns
    as its YAML lists them, the floor's plain SQL as its select does; the same data compares equal."""
    import duckdb

    with duckdb.connect(db, read_only=True) as conn:
        cursor = conn.execute(query)
        names = [column[0] for column in cursor.description]
        order = sorted(range(len(names)), key=names.__getitem__)
        rows = [tuple(row[i] for i in order) for row in cursor.fetchall()]
    return sorted(rows, key=lambda row: tuple(str(value) for value in row))


def compare(args: dict[str, Any]) -> dict[str, Any]:
    """kpis.kpi_daily of the floor and of the pipeline, row for row."""
    query = args.get("query") or "select * from kpis.kpi_daily"
    ours, theirs = _rows_by_name(args["pipeline_db"], query), _rows_by_name(args["floor_db"], query)
    missing, extra = set(ours) - set(theirs), set(theirs) - set(ours)
    return {
        "identical": ours == theirs,
        "rows_pipeline": len(ours),
        "rows_floor": len(theirs),
        "only_pipeline": [list(map(str, r)) for r in sorted(missing, key=repr)[:5]],
        "only_floor": [list(map(str, r)) for r in sorted(extra, key=repr)[:5]],
    }


TASKS = {
    "simulate": simulate,
    "pipeline": pipeline,
    "dagster_alone": dagster_alone,
    "floor_prepare": floor_prepare,
    "floor": floor,
    "compare": compare,
    **EVENT_TASKS,  # the event stream's section (benchmarks/events_section.py)
}


def main() -> None:
    task, raw = sys.argv[1], json.loads(sys.argv[2])
    result = TASKS[task](raw)
    Path(raw["out"]).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()

"""The benchmark harness: ``python -m benchmarks --scale 1`` (``make bench``).

Simulates the sources at a scale factor (``SimConfig.scale``), then measures in one session, each
measurement in its own process (``benchmarks.worker``) so that its peak memory is its own:

* the full build over the whole window (stages extract, land, load, validate, dbt, checks, publish), with a
  pyinstrument profile kept beside the result;
* the floor: the SQL dbt compiled, run in order in one DuckDB connection over the same raw layer; and
  whether both give the same ``kpis.kpi_daily``;
* Dagster alone: the same run with every step idle (``benchmarks/idle.py``), the part of the build no work
  inside the steps can remove; after the ladder, the same for one day;
* a daily incremental run after N days of history, and a rerun of that day (no new data); with ``--repeat N``,
  each of them in N rounds on fresh copies of its state, judged by the median;
* optionally the full build at other scale factors, and the fitted growth;
* optionally (``--events SCALE:DAYS``, on in ``make bench``) the product's event stream over its own window:
  ingestion, the usage models against their floor, and their KPIs against the truth (``benchmarks.events_section``).

The Dagster instances are on SQLite, or with ``--dagster-storage postgres`` on a temporary local PostgreSQL
server (``benchmarks.postgres``), one new database per instance where a SQLite instance would be new.

Writes ``<output>/<date>-SF<s>.json``, ``.md`` and the profile (``-profile.html``/``.txt``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import events_section
from benchmarks.postgres import Server, temporary_server

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "duckdb", "polars", "pandera", "pyinstrument")
# Issue 26's targets: the full build (721 days) within 10x its floor and 2 GiB at SF 1 (4 GiB at SF 10); the
# daily run after 720 days under 15 s, and within 10% of the same run after 30 days; a no-data day under 5 s;
# an old day re-run inside the history under 20 s.
TARGETS = {
    "full_build_ratio": 10.0,
    "peak_gib": 2.0,
    "daily_720_s": 15.0,
    "daily_growth_30_to_720": 0.10,
    "no_data_s": 5.0,
    "old_day_rerun_s": 20.0,
}
PEAK_GIB_SF10 = 4.0
GIB = 1024**3
EXTRA_ENV: dict[str, str] = {}  # --env: set for every measured process (e.g. to try a Dagster setting)
RUN_OPTIONS: dict[str, Any] = {}  # passed to every pipeline run (--max-quarantine-rate)
SERVER: list[Server] = []  # --dagster-storage postgres: the session's server


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def task(name: str, env: dict[str, str] | None = None, **args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh process (``env`` added to its environment) and return its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        environment = os.environ | {"PYTHONPATH": str(ROOT), "DAGSTER_DISABLE_TELEMETRY": "1"} | EXTRA_ENV | (env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", name, json.dumps(args | {"out": str(out)})],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark task {name} failed:\n{proc.stdout[-4000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    finally:
        out.unlink(missing_ok=True)


def new_instance(name: str) -> dict[str, str]:
    """The environment of the processes of a new Dagster instance: on PostgreSQL, a new empty database
    ``name`` (a SQLite instance is new with its Dagster home, which the caller empties)."""
    return {"DATAOPS_PG_URL": SERVER[0].new_database(name)} if SERVER else {}


def storage_description(storage: str) -> dict[str, str]:
    """What the result records of the instances' storage: its kind, the server's version, and the event
    batch size the runs used (the platform's default on PostgreSQL unless ``--env`` set one)."""
    if storage != "postgres":
        return {"storage": "sqlite"}
    from orchestration.lib.instance import EVENT_BATCH_SIZE, POSTGRES_EVENT_BATCH

    batch = EXTRA_ENV.get(EVENT_BATCH_SIZE) or os.environ.get(EVENT_BATCH_SIZE) or POSTGRES_EVENT_BATCH
    return {"storage": "postgres", "server": SERVER[0].version, "event_batch_size": batch}


def storage_phrase(storage: dict[str, str]) -> str:
    """The result's sentence on where its Dagster instances kept their runs and events."""
    if storage["storage"] != "postgres":
        return "Dagster instances on SQLite (files in each Dagster home)."
    return (
        f"Dagster instances on PostgreSQL ({storage['server']}: a temporary local server with its default "
        f"durability, a new database per instance), DAGSTER_EVENT_BATCH_SIZE={storage['event_batch_size']}."
    )


def machine() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # the code measured differs from the commit; earlier results written beside it do not make it so
    status = ["git", "status", "--porcelain", "--", ".", ":!benchmarks/results"]
    dirty = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(int(meminfo["MemTotal"].split()[0]) * 1024 / GIB, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "commit": commit,
        "worktree_dirty": bool(dirty),
        "load_average_at_start": list(os.getloadavg()),
    }


def scale_dir(work: Path, scale: float) -> Path:
    """The folder of one scale's data directories under the harness's work folder."""
    return work / f"SF{scale:g}"


def full_dir(work: Path, scale: float) -> Path:
    """The full build's data directory: its warehouse, its Dagster instance and dbt's logs."""
    return scale_dir(work, scale) / "full"


def fresh(directory: Path, sources: Path) -> Path:
    """A data directory with a copy of the simulated sources and nothing built yet."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    shutil.copytree(sources, directory / "sources")
    return directory


def simulated(work: Path, scale: float, start: dt.date, end: dt.date, seed: int) -> tuple[Path, dict[str, Any]]:
    base = scale_dir(work, scale) / f"sources-from-{start}"
    say(f"simulating SF {scale:g}: {start}..{end} (continues an existing simulation of the same config)")
    result = task(
        "simulate", data_dir=str(base), scale=scale, seed=seed, start=start.isoformat(), through=end.isoformat()
    )
    say(f"  simulated {result['days']} new days in {result['wall_s']:.1f} s")
    return base / "sources", result


def pipeline(
    data_dir: Path,
    start: dt.date,
    end: dt.date,
    what: str,
    profile: Path | None = None,
    rebuild_unchanged: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    say(f"{what}: pipeline run {start}..{end} ({(end - start).days + 1} days)")
    args: dict[str, Any] = {"data_dir": str(data_dir), "start": start.isoformat(), "end": end.isoformat()}
    args |= RUN_OPTIONS | {"rebuild_unchanged": rebuild_unchanged}
    if profile is not None:
        args["profile"] = str(profile)
    result = task("pipeline", env=env, **args)
    status = "ok" if result["success"] else f"FAILED {result['failures'][:2]} {result['failed_checks'][:3]}"
    say(f"  {result['wall_s']:.1f} s, peak {result['peak_rss'] / GIB:.2f} GiB, {status}")
    return result


def full_build_and_floor(
    work: Path, sources: Path, scale: float, start: dt.date, end: dt.date, profile: Path | None
) -> dict[str, Any]:
    data_dir = fresh(full_dir(work, scale), sources)
    build = pipeline(data_dir, start, end, f"full build SF {scale:g}", profile, env=new_instance("full"))
    if not build["success"]:
        raise RuntimeError(f"the full build failed: {build['failures'][:3]} {build['failed_checks'][:3]}")
    floor_dir = scale_dir(work, scale) / "floor"
    shutil.rmtree(floor_dir, ignore_errors=True)
    say("floor: raw layer to Parquet and dbt compile (untimed)")
    targets = [t for t in build.get("dbt_targets", []) if Path(t, "manifest.json").exists()]
    prepared = task(
        "floor_prepare",
        dbt_target=targets[-1] if targets else "",
        data_dir=str(data_dir),
        floor_dir=str(floor_dir),
        start=start.isoformat(),
        end=end.isoformat(),
    )
    floor = task("floor", floor_dir=str(floor_dir)) | prepared
    say(f"  floor {floor['wall_s']:.1f} s, peak {floor['peak_rss'] / GIB:.2f} GiB ({floor['models']} models)")
    same = task(
        "compare", pipeline_db=str(data_dir / "warehouse" / "build.duckdb"), floor_db=str(floor_dir / "build.duckdb")
    )
    say(f"  KPIs identical: {same['identical']} ({same['rows_pipeline']} rows)")
    alone = dagster_alone(scale_dir(work, scale), data_dir, start, end)
    return {
        "build": build,
        "floor": floor,
        "kpis_compared": same,
        "ratio": build["wall_s"] / max(floor["wall_s"], 1e-9),
        "dagster_alone": alone,
    }


def spark_build(work: Path, sources: Path, scale: float, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The same full build with its dbt step on a local Spark (``DATAOPS_ENGINE=spark``, docs/deployment.md),
    and whether its KPIs equal the DuckDB build's; run after :func:`full_build_and_floor`, whose floor it
    is measured against."""
    data_dir = fresh(scale_dir(work, scale) / "full-spark", sources)
    spark = {"DATAOPS_ENGINE": "spark"} | new_instance("full_spark")
    build = pipeline(data_dir, start, end, f"full build SF {scale:g} on Spark", env=spark)
    duckdb_db = full_dir(work, scale) / "warehouse" / "build.duckdb"
    same = task(
        "compare",
        pipeline_db=str(data_dir / "warehouse" / "build.duckdb"),
        floor_db=str(duckdb_db),
        query="select date_day, kpi_name, value from kpis.kpi_daily",  # compare sorts the rows
    )
    say(f"  KPIs identical to the DuckDB build: {same['identical']} ({same['rows_pipeline']} rows)")
    return {"build": build, "kpis_compared": same}


def dagster_alone(work: Path, data_dir: Path, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The same run on a new instance with every step idle (benchmarks/idle.py): Dagster's own cost.

    A new instance: after the ladder, the real daily run's instance holds the history's runs, so the idle
    day may cost a little less than the same day's Dagster work in the real run."""
    home = work / "dagster-alone"
    shutil.rmtree(home, ignore_errors=True)
    say(f"Dagster alone: the same run {start}..{end}, every step idle")
    args: dict[str, Any] = {
        "data_dir": str(data_dir),
        "dagster_home": str(home),
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    # a failure is reported in the table, not raised: the build stays
    result = task("dagster_alone", env=new_instance("dagster_alone"), **args)
    status = "ok" if result["success"] else f"FAILED {result.get('failures', [])[:2]}"
    say(f"  {result['wall_s']:.1f} s, {sum(result['events'].values()):,} events, {status}")
    return result


def ladder(work: Path, scale: float, start: dt.date, history: list[int], seed: int, repeat: int = 1) -> dict[str, Any]:
    """Daily runs after growing history: build up to day N, then time day N+1; then rerun it (no new data).

    The sources advance with the runs, as in production: each run reads the systems of record as they are at
    the end of its last day (simulated in an untimed task before it). Over sources simulated to the end of the
    window instead, a CRM that keeps only each record's current state hides every account modified later
    from the early days (its parent, a bill-to), and the early runs' gate fails on orphans the real daily
    schedule never sees; the full build, one run over the whole window, is not affected.
    """
    data_dir = scale_dir(work, scale) / "ladder"
    states = scale_dir(work, scale) / "ladder-states"  # each daily point's state, kept for its repeats
    for directory in (data_dir, states):
        shutil.rmtree(directory, ignore_errors=True)
    instance = new_instance("ladder")

    def advance(through: dt.date) -> None:
        task(
            "simulate",
            data_dir=str(data_dir),
            scale=scale,
            seed=seed,
            start=start.isoformat(),
            through=through.isoformat(),
        )

    runs: list[dict[str, Any]] = []
    built = 0
    last_day = start
    for days in sorted(history):
        if days > built:
            advance(start + dt.timedelta(days=days - 1))
            backfill = pipeline(
                data_dir,
                start + dt.timedelta(days=built),
                start + dt.timedelta(days=days - 1),
                f"history to {days} days",
                env=instance,
            )
            runs.append({"kind": "history", "history_days": days, **_brief(backfill)})
        last_day = start + dt.timedelta(days=days)
        advance(last_day)
        if repeat > 1:
            shutil.copytree(data_dir, states / str(days), symlinks=True)
            os.sync()  # the copy's writes on disk before the run, not flushed beside it
        daily = pipeline(data_dir, last_day, last_day, f"daily run after {days} days of history", env=instance)
        runs.append({"kind": "daily", "history_days": days, **_brief(daily)})
        built = days + 1
    rerun = pipeline(
        data_dir, last_day, last_day, "no-data run (the same day again, nothing new in the sources)", env=instance
    )
    runs.append({"kind": "no_data", "history_days": built - 1, **_brief(rerun)})
    # The same again with dbt run anyway: what the no-data run costs without skipping an unchanged build.
    forced = pipeline(data_dir, last_day, last_day, "no-data run, dbt run anyway", rebuild_unchanged=True, env=instance)
    runs.append({"kind": "no_data_rebuilt", "history_days": built - 1, **_brief(forced)})
    # One old day re-landed and rebuilt inside the history (a source fix for that day).
    old = start + dt.timedelta(days=max(built // 2, 1) - 1)
    again = pipeline(data_dir, old, old, f"one old day ({old}) re-run inside {built - 1} days of history", env=instance)
    runs.append({"kind": "old_day", "history_days": built - 1, **_brief(again)})
    result = {"runs": runs, "dagster_alone": dagster_alone(data_dir.parent, data_dir, last_day, last_day)}
    if repeat > 1:
        result["repeats"] = repeats(data_dir, states, start, sorted(history), old, repeat, instance)
        shutil.rmtree(states)  # the kept states and the data directories the rounds set aside
    return result


def restore(state: Path, directory: Path, aside: Path) -> None:
    """``directory`` made a fresh copy of ``state``, flushed to disk before the run that follows. The directory it
    replaces is moved into ``aside``, for the caller to delete after its runs: this disk is mounted with online
    discard, and deleting gigabytes trims them while the next run reads and writes."""
    if directory.exists():
        aside.mkdir(parents=True, exist_ok=True)
        directory.rename(aside / uuid.uuid4().hex)
    shutil.copytree(state, directory, symlinks=True)
    os.sync()  # the copy's writes on disk before the run, not flushed beside it


def repeats(
    data_dir: Path,
    states: Path,
    start: dt.date,
    history: list[int],
    old: dt.date,
    repeat: int,
    instance: dict[str, str],
) -> list[dict[str, Any]]:
    """Rounds 2..``repeat`` of the measured runs, each on a fresh copy of the state its first round ran on.

    A single run on these machines spreads by seconds, more than the 10% the growth target allows, and a slow
    quarter hour falls on one point of the ladder but not another. Each round runs every point again in turn:
    the daily run after each history; after the longest, on the same copy, the no-data day and the old day (as
    in the first round, less its no-data run with dbt run anyway); and Dagster alone. The targets take the
    median over rounds, and the growth each round's own ratio (``targets``). The copy is restored at the data
    directory's own path, which dbt's parse and the runs' paths name (``restore``).
    """
    last, longest = start + dt.timedelta(days=history[-1]), history[-1]
    out: list[dict[str, Any]] = []
    for number in range(2, repeat + 1):
        measured: list[tuple[str, int, dict[str, Any]]] = []
        for days in history:
            restore(states / str(days), data_dir, states / "aside")
            day = start + dt.timedelta(days=days)
            daily = pipeline(data_dir, day, day, f"round {number}: daily run after {days} days", env=instance)
            measured.append(("daily", days, _brief(daily)))
        rerun = pipeline(data_dir, last, last, f"round {number}: no-data run", env=instance)
        again = pipeline(data_dir, old, old, f"round {number}: one old day ({old}) re-run", env=instance)
        measured += [("no_data", longest, _brief(rerun)), ("old_day", longest, _brief(again))]
        measured.append(("dagster_alone", longest, dagster_alone(data_dir.parent, data_dir, last, last)))
        out += [{"kind": kind, "history_days": days, "round": number} | run for kind, days, run in measured]
    return out


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "start",
        "end",
        "days",
        "success",
        "failures",
        "failed_checks",
        "wall_s",
        "startup_s",
        "planning_s",
        "peak_rss",
        "stages",
        "steps",
        "events",
    )
    # dbt's own seconds per node type (when the run built): the dbt step less them is what is around dbt
    return {k: run[k] for k in keys} | {"dbt_nodes_s": run.get("dbt_nodes_s", {})}


def growth(points: list[tuple[float, float]]) -> float | None:
    """The exponent b of y = a * x^b, least squares in log-log."""
    usable = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(usable) < 2:
        return None
    mx = sum(x for x, _ in usable) / len(usable)
    my = sum(y for _, y in usable) / len(usable)
    var = sum((x - mx) ** 2 for x, _ in usable)
    return sum((x - mx) * (y - my) for x, y in usable) / var if var else None


def gib(size: float) -> str:
    return f"{size / GIB:.2f}"


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    platform_run = "full" in result or "incremental" in result  # else the event stream's section alone
    lines = [
        f"## Benchmark SF {result['scale']:g}, {result['days']} days ({result['window'][0]}..{result['window'][1]})"
        if platform_run
        else "## Benchmark: the event stream",
        "",
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; commit {m['commit'][:10]}"
        f"{' (dirty worktree)' if m['worktree_dirty'] else ''}; "
        f"load average at start {m['load_average_at_start'][0]:.1f}"
        f" (shared machine: timings are noisy). {', '.join(f'{k} {v}' for k, v in m['packages'].items())}.",
        "",
    ]
    if platform_run and result.get("dagster_storage"):
        lines += [storage_phrase(result["dagster_storage"]), ""]
    if "full" in result:
        lines += _full_build_table(result["full"])
    lines += _ladder_and_scaling_tables(result)
    if "events" in result:
        lines += events_section.table(result["events"])
    if platform_run:
        lines += ["| target (2 cores) | measured | met |", "| --- | --- | --- |"]
        for name, (measured, target, met) in result["targets"].items():
            lines.append(f"| {name} <= {target} | {measured} | {met} |")
    return "\n".join(lines) + "\n"


def _full_build_table(full: dict[str, Any]) -> list[str]:
    build, floor = full["build"], full["floor"]
    lines = ["| full build stage | wall s | share | peak RSS GiB |", "| --- | ---: | ---: | ---: |"]
    total = build["wall_s"]
    for stage, numbers in build["stages"].items():
        lines.append(
            f"| {stage} | {numbers['seconds']:.1f} | {numbers['seconds'] / total:.0%} | {gib(numbers['peak_rss'])} |"
        )
    accounted = sum(n["seconds"] for n in build["stages"].values())
    lines.append(f"| orchestration and the rest | {total - accounted:.1f} | {(total - accounted) / total:.0%} | |")
    startup = build["startup_s"]
    lines.append(f"| - of which start-up (imports, definitions) | {startup:.1f} | {startup / total:.0%} | |")
    if "planning_s" in build:
        planning = build["planning_s"]
        lines.append(
            f"| - of which run planning (events per asset and day) | {planning:.1f} | {planning / total:.0%} | |"
        )
    lines += [
        f"| **full build** | **{total:.1f}** | | **{gib(build['peak_rss'])}** |",
        f"| **floor** (compiled SQL, one DuckDB connection) | **{floor['wall_s']:.1f}** | | {gib(floor['peak_rss'])} |",
        f"| **full build / floor** | **{full['ratio']:.1f}x** | | |",
    ]
    alone = full.get("dagster_alone")
    if alone and not alone["success"]:
        lines.append(f"| Dagster alone: FAILED ({'; '.join(alone.get('failures', []))[:200]}) | | | |")
    elif alone:
        idle = alone["wall_s"]
        lines += [
            f"| Dagster alone: the same run on a new instance, every step idle | {idle:.1f} | {idle / total:.0%} | |",
            f"| Dagster alone / floor | {idle / max(floor['wall_s'], 1e-9):.1f}x | | |",
            f"| (full build - Dagster alone) / floor | {(total - idle) / max(floor['wall_s'], 1e-9):.1f}x | | |",
        ]
    spark = full.get("spark")
    if spark:
        built = spark["build"]
        ok = "" if built["success"] else f" (FAILED: {'; '.join(built['failed_checks'] or built['failures'])[:150]})"
        dbt = built["stages"]["dbt"]
        lines += [
            f"| **full build, dbt on Spark** (local, DATAOPS_ENGINE=spark){ok} | **{built['wall_s']:.1f}** | "
            f"| **{gib(built['peak_rss'])}** |",
            f"| - of which dbt on Spark, and its tables back into DuckDB | {dbt['seconds']:.1f} "
            f"| {dbt['seconds'] / built['wall_s']:.0%} | {gib(dbt['peak_rss'])} |",
            f"| **full build on Spark / floor** | **{built['wall_s'] / max(floor['wall_s'], 1e-9):.1f}x** | | |",
        ]
    lines += [
        "",
        f"KPIs of floor and pipeline identical: {full['kpis_compared']['identical']} "
        f"({full['kpis_compared']['rows_pipeline']} rows of kpis.kpi_daily). Build succeeded: {build['success']}.",
        "",
    ]
    if spark:
        lines += [
            f"KPIs of the Spark build and the DuckDB build identical: {spark['kpis_compared']['identical']} "
            f"({spark['kpis_compared']['rows_pipeline']} rows).",
            "",
        ]
    if build.get("events"):
        lines += [f"Dagster events the build wrote: {events_phrase(build['events'])}.", ""]
    if build.get("pandera"):
        lines += ["| pandera | rows | seconds | rows/s | share of build |", "| --- | ---: | ---: | ---: | ---: |"]
        for where, p in build["pandera"].items():
            rate = p["rows"] / p["seconds"] if p["seconds"] else 0
            lines.append(f"| {where} | {p['rows']:,} | {p['seconds']:.1f} | {rate:,.0f} | {p['seconds'] / total:.1%} |")
        lines.append("")
    return lines


def events_phrase(events: dict[str, int], shown: int = 4) -> str:
    """The run's event count and its largest kinds, e.g. ``775 (STEP_OUTPUT 223, ...)``."""
    top = sorted(events.items(), key=lambda kv: (-kv[1], kv[0]))[:shown]
    return f"{sum(events.values()):,} ({', '.join(f'{kind} {count:,}' for kind, count in top)})"


def _ladder_and_scaling_tables(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if result.get("incremental"):
        lines += [
            "| run | history days | wall s | start-up s | ingest s | dbt s | checks s | Dagster events | peak RSS GiB "
            "| ok |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        labels = {
            "history": "backfill (builds the history)",
            "daily": "**daily incremental**",
            "no_data": "**no new data**",
            "no_data_rebuilt": "no new data, dbt run anyway",
            "old_day": "**one old day re-run**",
        }
        for run in result["incremental"]["runs"]:
            label = (
                f"{labels[run['kind']]} {run['start']}..{run['end']}"
                if run["kind"] in ("history", "old_day")
                else labels[run["kind"]]
            )
            st = run["stages"]
            ingest = sum(st[stage]["seconds"] for stage in ("extract", "land", "load", "validate") if stage in st)
            events = sum(run.get("events", {}).values())
            ok = "yes" if run["success"] else "FAILED: " + "; ".join(run["failed_checks"] or run["failures"])[:90]
            lines.append(
                f"| {label} | {run['history_days']} | {run['wall_s']:.1f} | {run['startup_s']:.1f} "
                f"| {ingest:.1f} | {st['dbt']['seconds']:.1f} | {st['checks']['seconds']:.1f} "
                f"| {f'{events:,}' if events else '–'} | {gib(run['peak_rss'])} | {ok} |"
            )
        alone = result["incremental"].get("dagster_alone")
        if alone:
            lines.append(
                f"| Dagster alone: the daily run, every step idle | – | {alone['wall_s']:.1f} "
                f"| {alone['startup_s']:.1f} | – | {alone['steps'].get('enterprise_model', 0):.1f} | – "
                f"| {sum(alone['events'].values()):,} | – | {'yes' if alone['success'] else 'FAILED'} |"
            )
        lines.append("")
        lines += _rounds_table(result["incremental"])
    if result.get("scaling"):
        lines += [
            "| scale | full build s | peak RSS GiB | floor s | Dagster alone s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for point in result["scaling"]["points"]:
            idle = point.get("dagster_alone_s")
            lines.append(
                f"| SF {point['scale']:g} | {point['wall_s']:.1f} | {gib(point['peak_rss'])} | {point['floor_s']:.1f} "
                f"| {'–' if idle is None else f'{idle:.1f}'} |"
            )
        fit = result["scaling"]
        lines += ["", f"Fitted growth: time ~ SF^{fit['time_exponent']}, memory ~ SF^{fit['memory_exponent']}.", ""]
    return lines


def _rounds_table(incremental: dict[str, Any]) -> list[str]:
    """With ``--repeat``: each measured run's wall seconds in every round, each on a fresh copy of the state its
    first round ran on, and their median, which the targets take."""
    if not incremental.get("repeats"):
        return []
    history = max(r["history_days"] for r in incremental["runs"])
    alone = incremental.get("dagster_alone")
    first = [*incremental["runs"], *([alone | {"kind": "dagster_alone", "history_days": history}] if alone else [])]
    walls = round_walls({"runs": first, "repeats": incremental["repeats"]})
    rounds = sorted({r for by_round in walls.values() for r in by_round})
    labels = {"daily": "daily incremental", "no_data": "no new data", "old_day": "one old day re-run"}
    labels["dagster_alone"] = "Dagster alone"
    lines = [
        "Each measured run again, in rounds, on a fresh copy of the state its first round ran on (`--repeat`): wall "
        "seconds; the targets take the median, and the growth each round's own ratio.",
        "",
        "| run | history days | " + " | ".join(f"round {r}" for r in rounds) + " | median |",
        "| --- | ---: | " + " | ".join("---:" for _ in rounds) + " | ---: |",
    ]
    for (kind, days), by_round in walls.items():
        if kind in labels:
            cells = " | ".join(f"{by_round[r]:.1f}" if r in by_round else "–" for r in rounds)
            lines.append(f"| {labels[kind]} | {days} | {cells} | {statistics.median(by_round.values()):.1f} |")
    return [*lines, ""]


def idle_seconds(full: dict[str, Any]) -> float | None:
    """Dagster alone's wall time beside a full build, if it ran and succeeded."""
    alone = full.get("dagster_alone") or {}
    return alone["wall_s"] if alone.get("success") else None


def targets(result: dict[str, Any]) -> dict[str, tuple[str, float, str]]:
    out: dict[str, tuple[str, float, str]] = {}

    def check(name: str, value: float | None, fmt: str, limit: float | None = None) -> None:
        limit = TARGETS[name] if limit is None else limit
        out[name] = (
            fmt.format(value) if value is not None else "not measured",
            limit,
            "n/a" if value is None else ("yes" if value <= limit else "NO"),
        )

    full = result.get("full")
    check("full_build_ratio", full["ratio"] if full else None, "{:.1f}x")
    if full and idle_seconds(full):  # the part no work inside the steps can remove
        measured, limit, met = out["full_build_ratio"]
        alone = f"{idle_seconds(full) / max(full['floor']['wall_s'], 1e-9):.1f}x"
        out["full_build_ratio"] = (f"{measured} (Dagster alone, every step idle: {alone})", limit, met)
    peak_limit = PEAK_GIB_SF10 if result["scale"] >= 10 else TARGETS["peak_gib"]
    check("peak_gib", full["build"]["peak_rss"] / GIB if full else None, "{:.2f} GiB", peak_limit)
    walls = round_walls(result.get("incremental", {}))
    daily = {days: by_round for (kind, days), by_round in walls.items() if kind == "daily"}
    longest, shortest = (max(daily), min(daily)) if daily else (0, 0)
    check("daily_720_s", *_median_phrase(daily.get(720, {}), "{:.1f} s"))
    if longest and longest != 720:
        median, phrase = _median_phrase(daily[longest], "{:.1f} s")
        out["daily_720_s"] = (phrase.format(median) + f" after {longest} days", TARGETS["daily_720_s"], "n/a")
    # each round's own ratio: a slow quarter hour then falls on both of a round's runs or on neither
    grew = {r: wall / daily[shortest][r] - 1 for r, wall in daily.get(longest, {}).items() if r in daily[shortest]}
    median, phrase = _median_phrase(grew if longest > shortest else {}, "{:+.0%}", f"{shortest} to {longest} days")
    check("daily_growth_30_to_720", median, phrase)
    check("no_data_s", *_median_phrase(walls.get(("no_data", longest), {}), "{:.1f} s"))
    check("old_day_rerun_s", *_median_phrase(walls.get(("old_day", longest), {}), "{:.1f} s"))
    return out


def round_walls(incremental: dict[str, Any]) -> dict[tuple[str, int], dict[int, float]]:
    """The wall seconds of each measured kind of run and history, by round (round 1: the ladder's own runs)."""
    walls: dict[tuple[str, int], dict[int, float]] = {}
    for run in [*incremental.get("runs", []), *incremental.get("repeats", [])]:
        walls.setdefault((run["kind"], run["history_days"]), {})[run.get("round", 1)] = run["wall_s"]
    return walls


def _median_phrase(by_round: dict[int, float], fmt: str, what: str = "") -> tuple[float | None, str]:
    """The median over the rounds, and the format of the target's line: the one value as it was, or the median
    of several and what each round measured."""
    if not by_round:
        return None, fmt
    values = [by_round[r] for r in sorted(by_round)]
    notes = [what] if what else []
    if len(values) > 1:
        notes.append(f"median of {len(values)} rounds: " + ", ".join(fmt.format(v) for v in values))
    return statistics.median(values), fmt + (f" ({'; '.join(notes)})" if notes else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="scale factor (SimConfig.scale), default 1")
    parser.add_argument("--days", type=int, default=0, help="days of the window (default: the largest history + 1)")
    parser.add_argument("--incremental", default="30,180,720", help="history lengths for daily runs ('' to skip)")
    parser.add_argument("--scaling", default="", help="also full-build these scale factors, e.g. 0.1,1,10 (slow)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "benchmarks", help="data directories")
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument profile")
    parser.add_argument("--no-full", action="store_true", help="skip the full build and floor (the ladder alone)")
    parser.add_argument(
        "--engines", default="duckdb", help="duckdb, or duckdb,spark: the full build again with dbt on a local Spark"
    )
    parser.add_argument(
        "--events",
        default="",
        metavar="SCALE:DAYS",
        help="also the event stream's section over its own window, e.g. 10:31 (make bench: EVENTS=10:31)",
    )
    parser.add_argument("--tag", default="", help="suffix of the result names")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the measured processes")
    parser.add_argument(
        "--max-quarantine-rate",
        type=float,
        default=None,
        help="per-partition quarantine limit of the runs (default: the platform's, DATAOPS_MAX_QUARANTINE_RATE)",
    )
    parser.add_argument(
        "--dagster-storage",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the instances' storage; postgres: a temporary local server, a new database per instance",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the ladder's measured runs in N rounds, each on a fresh copy of its state; the targets take the "
        "median (SQLite instances: the copy holds the Dagster home)",
    )
    parser.add_argument("--render", type=Path, help="only rewrite the Markdown table of an existing result JSON")
    options = parser.parse_args(argv)
    if options.render:
        rendered: dict[str, Any] = json.loads(options.render.read_text())
        rendered["targets"] = targets(rendered)
        options.render.with_suffix(".md").write_text(table(rendered))
        print(options.render.with_suffix(".md").read_text())
        return 0
    EXTRA_ENV.update(item.split("=", 1) for item in options.env)
    RUN_OPTIONS["max_quarantine_rate"] = options.max_quarantine_rate
    history = [int(x) for x in options.incremental.split(",") if x.strip()]
    days = options.days or (max(history) + 1 if history else 30)
    if history and max(history) >= days:
        parser.error(f"--days {days} leaves no day after {max(history)} days of history")
    if options.repeat < 1:
        parser.error(f"--repeat {options.repeat}: at least one round")
    if options.repeat > 1 and options.dagster_storage == "postgres":
        parser.error(
            "--repeat needs --dagster-storage sqlite: a round restores the data directory, and a "
            "PostgreSQL instance is not in it"
        )
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # the partitions end yesterday
    start = end - dt.timedelta(days=days - 1)
    EXTRA_ENV["DATAOPS_DAGSTER_STORAGE"] = options.dagster_storage  # not the caller's environment's
    with contextlib.ExitStack() as stack:
        if options.dagster_storage == "postgres":
            SERVER.append(stack.enter_context(temporary_server()))
            say(f"Dagster instances on a temporary server: {SERVER[0].version}, port {SERVER[0].port}")
        return session(options, history, start, end)


def session(options: argparse.Namespace, history: list[int], start: dt.date, end: dt.date) -> int:
    """The measurements the options ask for, their result written after each phase."""
    days = (end - start).days + 1
    options.output.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-SF{options.scale:g}{options.tag}"
    profile = None if options.no_profile else options.output / f"{stem}-profile"
    began = time.perf_counter()
    result: dict[str, Any] = {
        "scale": options.scale,
        "days": days,
        "window": [start.isoformat(), end.isoformat()],
        "machine": machine(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "extra_env": EXTRA_ENV,
        "dagster_storage": storage_description(options.dagster_storage),
        "run_options": RUN_OPTIONS | {"tags": {"dataops/allow_volume_spike": "all"}},
    }
    json_path = options.output / f"{stem}.json"

    def save(final: bool = False) -> None:
        """Written after every phase, so an interrupted session still leaves its numbers."""
        result["targets"] = targets(result)
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
        result["session_s"] = round(time.perf_counter() - began, 1)
        result["complete"] = final
        json_path.write_text(json.dumps(result, indent=1, default=str))
        json_path.with_suffix(".md").write_text(table(result))

    if not options.no_full:
        sources, result["simulation"] = simulated(options.work, options.scale, start, end, options.seed)
        result["full"] = full_build_and_floor(options.work, sources, options.scale, start, end, profile)
        save()
        if "spark" in options.engines.split(","):
            result["full"]["spark"] = spark_build(options.work, sources, options.scale, start, end)
        if profile is not None:
            result["profile"] = [str(profile.with_name(profile.name + s)) for s in (".html", ".txt")]
        save()
    if history:
        result["incremental"] = ladder(options.work, options.scale, start, history, options.seed, options.repeat)
        save()
    scales = [float(x) for x in options.scaling.split(",") if x.strip()]
    if scales:
        points = []
        for scale in scales:
            if scale == options.scale:
                full = result["full"]
            else:
                other, _ = simulated(options.work, scale, start, end, options.seed)
                full = full_build_and_floor(options.work, other, scale, start, end, None)
            points.append(
                {
                    "scale": scale,
                    "wall_s": full["build"]["wall_s"],
                    "peak_rss": full["build"]["peak_rss"],
                    "floor_s": full["floor"]["wall_s"],
                    "ratio": full["ratio"],
                    "dagster_alone_s": idle_seconds(full),
                }
            )
            time_exp = growth([(p["scale"], p["wall_s"]) for p in points])
            mem_exp = growth([(p["scale"], p["peak_rss"]) for p in points])
            result["scaling"] = {
                "points": points,
                "time_exponent": None if time_exp is None else round(time_exp, 2),
                "memory_exponent": None if mem_exp is None else round(mem_exp, 2),
            }
            save()
    if options.events:
        events_scale, events_days = events_section.parse(options.events)
        result["events"] = events_section.section(options.work, events_scale, events_days, end, options.seed)
    save(final=True)
    print(json_path.with_suffix(".md").read_text())
    say(f"wrote {json_path} and {json_path.with_suffix('.md')} in {result['session_s']:.0f} s")
    return 0 if succeeded(result) else 1


def succeeded(result: dict[str, Any]) -> bool:
    """The full build succeeded with the floor's KPIs (else, without it, every daily run succeeded), and the event
    stream's section, if run, built usage KPIs equal to its floor's and the truth's."""
    verdicts = []
    if "full" in result:
        verdicts.append(result["full"]["build"]["success"] and result["full"]["kpis_compared"]["identical"])
    elif "incremental" in result:
        verdicts.append(all(r["success"] for r in result["incremental"]["runs"]))
    if "events" in result:
        events = result["events"]
        verdicts.append(events_section.ok(events))
        if not verdicts[-1]:
            say(f"the event stream's usage KPIs differ: truth {events['truth']}, floor {events['kpis_compared']}")
    return all(verdicts)

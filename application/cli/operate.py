"""Operating commands: ``run``, ``backfill``, ``status``, ``kpis`` and ``ui``."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Annotated

import typer
from rich.table import Table

from application.cli.common import console, err_console, fail, parse_date, progress_bar, settings, yesterday

FORMATS = ("table", "csv", "json")


def kpi_value(value: float, unit: str, grouped: bool = True) -> str:
    """A KPI value as its unit in the registry says: counts whole ("7"), amounts to the cent ("91,809.99")."""
    return f"{value:{',' if grouped else ''}.{0 if unit == 'count' else 2}f}"


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(backfill)
    app.command()(status)
    app.command()(kpis)
    app.command()(ui)


def _execute(job: str, start: dt.date, end: dt.date, build: str = "build_job") -> None:
    from application.runs import run_partitions

    label = str(start) if start == end else f"{start}..{end}"
    with progress_bar(f"{job} {label}") as bar:
        task = bar.add_task(f"{job} {label}", total=None, detail="")

        def tick(done: int, step: str, total: int) -> None:
            bar.update(task, completed=done, total=total, detail=step[:48])

        try:
            outcome = run_partitions(settings(), job, start, end, progress=tick, build_job=build)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if outcome.success:
        published = outcome.published or {}
        console.print(
            f"[green]landing run {outcome.landing_run_id} and build run {outcome.run_id} succeeded[/] "
            f"({outcome.steps} steps): published "
            f"{published.get('publish_id', '-')} as of {published.get('as_of_date', '-')}, "
            f"{published.get('kpi_values_changed', 0)} KPI values changed, "
            f"{published.get('restatements', 0)} restated"
        )
        return
    which = (
        f"build run {outcome.run_id} (after landing run {outcome.landing_run_id})"
        if outcome.landing_run_id
        else f"landing run {outcome.run_id} (nothing was built)"
    )
    err_console.print(f"[red]{which} failed[/]; the analyst warehouse keeps its previous publish.")
    for check in outcome.failed_checks:
        err_console.print(f"  failed check: {check}")
    for failure in outcome.failures[:5]:
        err_console.print(f"  failed step: {failure[:500]}")
    err_console.print("  details: `dataops ui`, then Runs")
    raise typer.Exit(1)


def run(date: Annotated[str | None, typer.Option(help="Business date (default: yesterday, UTC).")] = None) -> None:
    """Materialise one business date: every source, dbt, the quality gate and publishing."""
    day = parse_date(date, "--date") or yesterday()
    _execute("daily_elt_job", day, day)


def backfill(
    start: Annotated[str, typer.Option(help="First business date.")],
    end: Annotated[str, typer.Option(help="Last business date.")],
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Rebuild the dbt models from scratch.")] = False,
) -> None:
    """Materialise a range of business dates as one run (range-aware assets), idempotently."""
    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    assert first is not None and last is not None
    if last < first:
        raise fail(f"--end {last} is before --start {first}")
    _execute("daily_elt_job", first, last, build="full_rebuild_job" if full_refresh else "build_job")


def status() -> None:
    """The latest publish, its freshness, failed checks and quarantine counts (never blocks a run)."""
    from application.runs import latest_checks
    from dataops.publish.status import platform_status

    report = platform_status(settings(), checks=latest_checks(settings()))
    if report.published_at is None:
        console.print("Nothing published yet: run `make run` or `dataops run`.")
        raise typer.Exit(1)
    fresh = "[green]fresh[/]" if report.is_fresh else "[red]stale[/]"
    console.print(
        f"Last publish {report.publish_id} at {report.published_at:%Y-%m-%d %H:%M} UTC, as of business "
        f"date {report.as_of} ({fresh}: target {report.freshness_target})"
    )
    table = Table(title=f"KPIs on {report.as_of}")
    for column in ("kpi", "value", "unit", "final"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for row in report.kpis:
        table.add_row(
            row["kpi"], kpi_value(row["value"], row["unit"]), row["unit"], "yes" if row["is_final"] else "flash"
        )
    console.print(table)
    console.print(f"Failed checks in the last run: {', '.join(report.failed_checks) or 'none'}")
    if report.warnings:
        console.print(f"Warnings in the last run: {', '.join(report.warnings)}")
    quarantine = ", ".join(f"{k}: {v}" for k, v in report.quarantine.items() if v) or "none"
    console.print(f"Quarantined rows: {quarantine}")


def kpis(
    date: Annotated[str | None, typer.Option(help="Business date (default: the latest published).")] = None,
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """The published KPIs of a business date."""
    from dataops.publish.status import published_kpis

    if format not in FORMATS:
        raise typer.BadParameter(f"{format!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    day = parse_date(date, "--date")
    try:
        rows = published_kpis(settings(), day)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    if not rows:
        raise fail(f"no published KPIs for {day or 'any date'}")
    if format == "json":
        whole = [{**r, "value": int(r["value"])} if r["unit"] == "count" else r for r in rows]  # counts as integers
        sys.stdout.write(json.dumps(whole, indent=2) + "\n")
    elif format == "csv":
        sys.stdout.write("date,kpi,value,unit,is_final\n")
        for r in rows:
            value = kpi_value(r["value"], r["unit"], grouped=False)
            sys.stdout.write(f"{r['date']},{r['kpi']},{value},{r['unit']},{str(r['is_final']).lower()}\n")
    else:
        table = Table(title=f"KPIs on {rows[0]['date']}")
        for column in ("kpi", "value", "unit", "final"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for r in rows:
            table.add_row(r["kpi"], kpi_value(r["value"], r["unit"]), r["unit"], "yes" if r["is_final"] else "flash")
        console.print(table)


def ui(port: Annotated[int, typer.Option(help="Loopback port of the Dagster UI.")] = 3000) -> None:
    """Start the Dagster UI and daemon (`dagster dev`) on loopback, for this data directory."""
    from application.mock_sources import WorldClock, crm_environment
    from application.runs import platform_environment
    from dataops.core.settings import PROJECT_ROOT

    paths = settings()
    clock = WorldClock(paths)
    clock.start()
    with platform_environment(paths) as home, crm_environment(paths):
        console.print(f"Dagster UI: http://127.0.0.1:{port}  (instance {home}; Ctrl-C stops it)")
        executable = os.path.join(os.path.dirname(sys.executable), "dagster")
        subprocess.run(
            [executable, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(PROJECT_ROOT / "workspace.yaml")],
            cwd=PROJECT_ROOT,
            check=False,
        )

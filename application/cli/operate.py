"""Operating commands: ``run``, ``backfill``, ``status``, ``kpis`` and ``ui``."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from application.cli.common import console, err_console, fail, parse_date, progress_bar, settings, yesterday
from orchestration.lib.liveness import UNFINISHED

if TYPE_CHECKING:
    from application.run_log import RunLog
    from application.runs import RunOutcome

FORMATS = ("table", "csv", "json")


def kpi_value(value: float, unit: str, grouped: bool = True) -> str:
    """A KPI value as its unit in the registry says: counts whole ("7"), amounts to the cent ("91,809.99")."""
    return f"{value:{',' if grouped else ''}.{0 if unit == 'count' else 2}f}"


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(backfill)
    app.command()(status)
    app.command()(recover)
    app.command()(kpis)
    app.command()(ui)


def run_job(job: str, start: dt.date, end: dt.date, build: str = "build_job") -> None:
    """Run the landing ``job`` over the business dates ``start``..``end``, then ``build`` over what it landed,
    with a progress bar; report how they ended."""
    from application.runs import run_partitions

    label = str(start) if start == end else f"{start}..{end}"
    with progress_bar(f"{job} {label}") as bar:
        task = bar.add_task(f"{job} {label}", total=None, detail="")

        def tick(done: int, step: str, total: int) -> None:
            bar.update(task, completed=done, total=total, detail=step[:90])

        try:
            with quiet_stdout():
                outcome = run_partitions(
                    settings(), job, start, end, progress=tick, say=bar.console.print, build_job=build
                )
        except ValueError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("stopped before the run started: nothing ran", code=130) from None
    if outcome.success and outcome.nothing_new:
        console.print(
            f"{job} {label}: [green]landing run {outcome.run_id} succeeded[/]: nothing new landed, no build; "
            "its days are built, checked and published as they were"
        )
        return
    if outcome.success:
        published = outcome.published or {}
        console.print(
            f"{job} {label}: [green]landing run {outcome.landing_run_id} and build run {outcome.run_id} "
            f"succeeded[/] ({outcome.steps} steps): published "
            f"{published.get('publish_id', '-')} as of {published.get('as_of_date', '-')}, "
            f"{published.get('kpi_values_changed', 0)} KPI values changed, "
            f"{published.get('restatements', 0)} restated"
        )
        return
    _report_failure(outcome)


def _report_failure(outcome: RunOutcome) -> None:
    """The failed run (the landing, or the build after it), each failed step's root cause first, then where
    to read the rest."""
    which = "build" if outcome.landing_run_id else "landing"
    after = f" (after landing run {outcome.landing_run_id})" if outcome.landing_run_id else " (nothing was built)"
    if outcome.interrupted:
        err_console.print(
            f"[yellow]{which} run {outcome.run_id} interrupted[/]{after}: marked failed, its pool slots freed; "
            "the analyst warehouse keeps its previous publish. Run it again when you are ready."
        )
        raise typer.Exit(130)
    err_console.print(
        f"[red]{which} run {outcome.run_id} failed[/]{after}; the analyst warehouse keeps its previous publish."
    )
    for failure in outcome.failures[:5]:
        err_console.print(f"  failed step {failure[:1500]}")
    for check in outcome.failed_checks:
        err_console.print(f"  failed check: {check}")
    err_console.print("  details: `dataops ui`, then Runs; fix the cause and run again (a re-run is idempotent)")
    raise typer.Exit(1)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Whatever the run's libraries print (dbt's log lines, echoed by dagster-dbt) goes nowhere: the progress
    bar and the final report say what happened, and the UI keeps every line (Dagster captures them)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run(date: Annotated[str | None, typer.Option(help="Business date (default: yesterday, UTC).")] = None) -> None:
    """Materialise one business date: every source, dbt, the quality gate and publishing."""
    day = parse_date(date, "--date") or yesterday()
    run_job("daily_elt_job", day, day)


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
    run_job("daily_elt_job", first, last, build="full_rebuild_job" if full_refresh else "build_job")


def status() -> None:
    """The latest publish, its freshness, the runs (stuck or failed, and what to do), checks and quarantine."""
    from application.run_log import RunLog
    from application.runs import latest_checks
    from dataops.publish.status import platform_status

    paths = settings()
    report = platform_status(paths, checks=latest_checks(paths))
    _print_runs(RunLog(Path(os.environ.get("DAGSTER_HOME") or paths.dagster_home)))
    if report.published_at is None:
        console.print("Nothing published yet: run `make run` or `dataops run`.")
        raise typer.Exit(1)
    fresh = "[green]fresh[/]" if report.is_fresh else "[red]stale[/]"
    console.print(
        f"Last publish {report.publish_id} at {report.published_at:%Y-%m-%d %H:%M} UTC, as of business "
        f"date {report.as_of} ({fresh}: target {report.freshness_target})"
    )
    print_kpis(report.kpis, report.as_of)
    console.print(f"Failed checks in the last run: {', '.join(report.failed_checks) or 'none'}")
    if report.warnings:
        console.print(f"Warnings in the last run: {', '.join(report.warnings)}")
    quarantine = ", ".join(f"{k}: {v}" for k, v in report.quarantine.items() if v) or "none"
    console.print(f"Quarantined rows: {quarantine}")


def _print_runs(log: RunLog) -> None:
    """The runs in progress (alive or stuck) and the last run, with what to do about a stuck or failed one."""
    if not log.readable:
        return
    for run in log.runs(statuses=UNFINISHED):
        health = log.liveness(run)
        if health.alive:
            console.print(f"Run {run.run_id[:8]} ({run.job_name} {run.dates}) in progress since {run.created:%H:%M}")
            continue
        console.print(
            f"[red]Run {run.run_id} ({run.job_name} {run.dates}) is stuck[/]: {health.why}. The next `dataops run` "
            "(or the UI's run_watchdog sensor within a minute) marks it failed and frees its pool slot; "
            "`dataops recover` does it now."
        )
    finished = [run for run in log.runs(limit=5) if run.status not in UNFINISHED]
    if not finished:
        return
    last = finished[0]
    when = f"{last.ended or last.updated:%Y-%m-%d %H:%M} UTC"
    colour = "green" if last.status == "SUCCESS" else "red"
    console.print(f"Last run {last.run_id[:8]} ({last.job_name} {last.dates}): [{colour}]{last.status}[/] at {when}")
    if last.status == "FAILURE":
        for failure in log.step_failures(last.run_id)[:5]:
            console.print(f"  failed step {failure[:600]}")
        console.print("  what to do: fix the cause, then run the same dates again (a re-run is idempotent)")


def recover() -> None:
    """Mark runs whose process died as failed and free their pool slots now (every run does it first anyway)."""
    import dagster as dg

    from application.runs import platform_environment, quiet_libraries
    from orchestration.lib.instance import recover_dead_runs

    with platform_environment(settings()), quiet_libraries(), dg.DagsterInstance.get() as instance:
        recovered = recover_dead_runs(instance, by="dataops recover")
    for run in recovered:
        console.print(f"run {run.run_id} ({run.job_name}): {run.why}; marked failed, {run.freed_slots} slot(s) freed")
    if not recovered:
        console.print("No stuck run: every unfinished run has a live process.")


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
        print_kpis(rows, rows[0]["date"])


def print_kpis(rows: list[dict[str, Any]], day: object) -> None:
    """The KPI table that ``status``, ``kpis`` and ``demo`` show: one rendering, so they never disagree."""
    table = Table(title=f"KPIs on {day}")
    for column in ("kpi", "value", "unit", "final"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for row in rows:
        table.add_row(
            row["kpi"], kpi_value(row["value"], row["unit"]), row["unit"], "yes" if row["is_final"] else "flash"
        )
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

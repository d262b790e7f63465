"""Commands for the simulated systems of record: ``simulate`` and ``crm serve``."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated

import typer
from rich.table import Table

from application.cli.common import console, fail, parse_date, progress_bar, settings, yesterday

DEFAULT_SCALE = 0.05
DEFAULT_DAYS = 120
crm_app = typer.Typer(help="The CRM: serve the mock API, sync the enterprise view back.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.add_typer(crm_app, name="crm")


def simulate(
    through: Annotated[
        str | None, typer.Option(help="Last business date to simulate (default: yesterday, UTC).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help=f"First business date of a new simulation (default: {DEFAULT_DAYS} days before --through)."),
    ] = None,
    scale: Annotated[
        float, typer.Option(help="Scale factor: 1 is about 1,000 customers and a million rows over two years.")
    ] = DEFAULT_SCALE,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed, scale and dates give the same bytes.")] = 42,
    reset: Annotated[bool, typer.Option("--reset", help="Forget the existing simulation first.")] = False,
) -> None:
    """Simulate the enterprise (ERP, CRM, accounting) up to a date, continuing what already exists."""
    from source_systems.simulator.config import SimConfig
    from source_systems.simulator.run import SimulationError, existing_config, simulated_through
    from source_systems.simulator.run import reset as reset_sources
    from source_systems.simulator.run import simulate as run_simulation

    cfg_paths = settings()
    end = parse_date(through, "--through") or yesterday()
    begin = parse_date(start, "--start")
    if reset:
        reset_sources(cfg_paths.sources_dir)
    found = existing_config(cfg_paths.sources_dir)
    config = None
    if found is None:
        config = SimConfig(seed=seed, scale=scale, start=begin or end - dt.timedelta(days=DEFAULT_DAYS - 1))
    elif begin is not None or seed != 42 or scale != DEFAULT_SCALE:
        config = SimConfig(
            seed=seed, scale=scale, start=begin or found.start, drift_date=found.drift_date, dirt=found.dirt
        )
    done = simulated_through(cfg_paths.sources_dir)
    if done is not None and done >= end:
        console.print(f"Already simulated through {done}; nothing to do.")
        _print_summary(cfg_paths.sources_dir)
        return
    try:
        with progress_bar("simulating") as bar:
            task = bar.add_task("simulating", total=None, detail="")

            def tick(i: int, total: int, day: dt.date) -> None:
                bar.update(task, completed=i, total=total, detail=str(day))

            summary = run_simulation(cfg_paths.sources_dir, end, config, progress=tick)
    except Exception as exc:  # a clear message, not a traceback, for expected problems
        if isinstance(exc, SimulationError):
            raise fail(str(exc)) from None
        raise
    console.print(
        f"Simulated {summary.days_simulated} day(s): {summary.config.start} .. {summary.through} "
        f"(scale {summary.config.scale}, seed {summary.config.seed}) into {cfg_paths.sources_dir}"
    )
    _print_summary(cfg_paths.sources_dir)


def _print_summary(sources: os.PathLike[str]) -> None:
    from pathlib import Path

    import polars as pl

    from source_systems.simulator.run import system_counts

    root = Path(sources)
    table = Table(title="What each system holds")
    table.add_column("system")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for key, value in system_counts(root).items():
        system, name = key.split(".")
        table.add_row(system, name, f"{value:,}")
    console.print(table)
    dirt_path = root / "truth" / "dirt_log.parquet"
    if dirt_path.exists():
        dirt = pl.read_parquet(dirt_path).group_by("class").len().sort("class")
        parts = ", ".join(f"{c}: {n:,}" for c, n in dirt.iter_rows())
        console.print(f"Injected defects (truth/dirt_log.parquet): {parts}")
        console.print(f"Ground truth: {root / 'truth' / 'kpi_daily.parquet'}")


@crm_app.command("serve")
def crm_serve(
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface; loopback unless you mean otherwise.")] = "127.0.0.1",
    token: Annotated[
        str | None, typer.Option(help="Bearer token clients must send (default: $CRM_TOKEN or the development token).")
    ] = None,
) -> None:
    """Serve the mock CRM's HTTP API over the simulated CRM store."""
    from source_systems.crm.server import DEFAULT_TOKEN, serve_forever

    db = settings().crm_db
    if not db.exists():
        raise fail(f"no CRM store at {db}; run `dataops simulate` first")
    token = token or os.environ.get("CRM_TOKEN") or DEFAULT_TOKEN
    console.print(f"Mock CRM on http://{host}:{port}/api/v1/ (bearer token from --token / CRM_TOKEN)")
    serve_forever(db, host, port, token)

"""``dataops demo``: the main job behind ``make run``."""

from __future__ import annotations

import datetime as dt

import typer

from application.cli.common import console


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo() -> None:
    """Simulate the default window (or continue it), run the pipeline over what is new, publish, show KPIs."""
    from application.cli.common import settings
    from application.cli.operate import kpis, run_job
    from application.cli.sources import simulate
    from dataops.publish.analyst_warehouse import latest_publish
    from source_systems.simulator.run import existing_config, simulated_through

    paths = settings()
    simulate(through=None, start=None)
    config = existing_config(paths.sources_dir)
    last = simulated_through(paths.sources_dir)
    assert config is not None and last is not None
    published = latest_publish(paths)
    first = config.start
    as_of = published.get("as_of_date") if published else None
    if isinstance(as_of, dt.date):
        first = max(first, as_of + dt.timedelta(days=1))
    if first <= last:
        console.print(f"\nRunning the pipeline for {first}..{last} as one run (Dagster, recorded in the UI)")
        run_job("daily_elt_job", first, last)
    else:
        console.print(f"\nEverything through {last} is published already.")
    console.print()
    kpis(date=None, format="table")
    console.print(
        "\nNext:\n"
        "  dataops ui                 the Dagster UI on http://127.0.0.1:3000 (assets, runs, schedule, sensor)\n"
        "  dataops kpis --format csv  the latest KPIs; `dataops status` for freshness, checks, quarantine\n"
        f"  duckdb -readonly {paths.analytics_db}   (or Python: duckdb.connect(path, read_only=True))"
    )

"""Commands for the landing zone and the raw layer: ``lake prune`` and ``lake rebuild-raw``."""

from __future__ import annotations

from typing import Annotated

import typer

from application.cli.common import console, fail, settings

lake_app = typer.Typer(help="The immutable Parquet landing zone.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(lake_app, name="lake")


@lake_app.command("prune")
def prune(
    keep: Annotated[int, typer.Option(help="Versions to keep of every day (the newest ones).")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
) -> None:
    """Remove old extract versions from the landing zone (the only way they are ever removed)."""
    from dataops.ingest import lake

    root = settings().lake_dir
    if keep < 1:
        raise fail("--keep must be at least 1: the newest version is what the raw layer is built from")
    if dry_run:
        doomed = lake.prunable(root, keep=keep)
        for version, day in doomed:
            console.print(f"would remove {day} of {version.path.relative_to(root)}")
        console.print(f"{len(doomed)} old version(s) of a day would be removed")
        return
    removed = lake.prune(root, keep=keep)
    console.print(f"removed {len(removed)} old version(s) of a day, kept the newest {keep} of every day")


@lake_app.command("rebuild-raw")
def rebuild_raw() -> None:
    """Rebuild the warehouse's raw and quarantine schemas from the landing zone alone."""
    from dataops.ingest.pipeline import rebuild_raw as rebuild
    from orchestration.lib.resources import platform_resource

    options = platform_resource().ingest_options()  # the platform's limits and block budget, as a run's
    counts = rebuild(settings(), options, progress=lambda name: console.print(f"loading {name}"))
    for name, rows in counts.items():
        console.print(f"{name}: {rows:,} rows")

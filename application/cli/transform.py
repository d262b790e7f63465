"""``dataops dbt ...``: dbt with the registry's vars and the platform's environment filled in."""

from __future__ import annotations

from typing import Annotated

import typer

from application.cli.common import console, settings


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(dbt)


def dbt(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option(help="First business date of the window (incremental models).")] = None,
    end: Annotated[str | None, typer.Option(help="Last business date of the window.")] = None,
) -> None:
    """Run dbt on the build warehouse, e.g. `dataops dbt build` or `dataops dbt docs generate`."""
    from dataops.governance.definition_versions import adopted_registry
    from dataops.transform.runner import run_dbt

    if not ctx.args:
        console.print("give dbt arguments, e.g. `dataops dbt build --select marts`")
        raise typer.Exit(2)
    window = (start, end) if start and end else None
    here = settings()
    result = run_dbt(list(ctx.args), here, adopted_registry(here), window=window)
    console.print(result.output, markup=False, highlight=False)
    raise typer.Exit(0 if result.success else 1)

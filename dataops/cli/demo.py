"""``dataops demo``: the main job behind ``make run``."""

from __future__ import annotations

import typer

from dataops.cli.common import console


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo() -> None:
    """Simulate the default window (continuing any existing simulation) and show what each system holds."""
    from dataops.cli.sources import simulate

    simulate(through=None, start=None)
    console.print("\nNext: `dataops crm serve` serves the mock CRM; `make test` runs the checks.")

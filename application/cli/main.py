"""``dataops``: simulate the enterprise, run the pipeline, query and publish, from a terminal."""

from __future__ import annotations

import typer

from application.cli import demo, egress, governance, lake, operate, sources, transform

app = typer.Typer(
    name="dataops",
    help="Batch ELT platform: simulated ERP, CRM and accounting -> Parquet lake -> DuckDB -> published KPIs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
demo.register(app)
sources.register(app)
lake.register(app)
transform.register(app)
operate.register(app)
governance.register(app)
egress.register(app)

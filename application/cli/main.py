"""``dataops``: simulate the enterprise, run the pipeline, query and publish, from a terminal."""

from __future__ import annotations

import typer

from application.cli import definitions, demo, docs, egress, governance, lake, model, operate, sources, transform
from dataops.core.collector import collect_less_often

collect_less_often()  # every command's process, before its work (dataops/core/collector.py)

app = typer.Typer(
    name="dataops",
    help="Batch ELT platform: simulated ERP, CRM and accounting -> Parquet lake -> DuckDB -> published KPIs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def private_data() -> None:
    """Batch ELT platform: simulated ERP, CRM and accounting -> Parquet lake -> DuckDB -> published KPIs."""
    import os

    from dataops.core.settings import Settings, UntrustedSetting, platform_uid, secure_data_dir

    if os.geteuid() != platform_uid():
        return  # another account's command: the data directory is not its to change
    try:
        secure_data_dir(Settings.from_env())  # the platform's files are its own (docs/governance.md)
    except UntrustedSetting:
        return  # the command refuses the setting itself


demo.register(app)
sources.register(app)
lake.register(app)
transform.register(app)
docs.register(app)
operate.register(app)
governance.register(app)
egress.register(app)
definitions.register(app)
model.register(app)

"""Egress commands: ``dashboard build|serve``, ``export`` (Parquet data products) and ``crm sync``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from application.cli.common import console, fail, progress_bar, settings
from application.cli.sources import crm_app

dashboard_app = typer.Typer(help="The offline KPI dashboard.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dashboard_app, name="dashboard")
    app.command("export")(export)
    crm_app.command("sync")(crm_sync)


@dashboard_app.command("build")
def dashboard_build(
    output: Annotated[Path | None, typer.Option(help="Where to write it (default data/dashboard/index.html).")] = None,
) -> None:
    """Build the dashboard from the published warehouse: one HTML file that works with no network."""
    from application.runs import latest_checks
    from dataops.egress.dashboard import build_dashboard

    try:
        path = build_dashboard(settings(), output, checks=latest_checks(settings()))
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    console.print(f"dashboard: {path}  (open it in a browser, or `dataops dashboard serve`)")


@dashboard_app.command("serve")
def dashboard_serve(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8765,
    build: Annotated[bool, typer.Option(help="Build it first.")] = True,
) -> None:
    """Serve the dashboard on loopback (rebuilt files show on reload)."""
    from application.runs import latest_checks
    from dataops.egress.dashboard import build_dashboard, dashboard_path, serve_dashboard

    paths = settings()
    if build:
        try:
            build_dashboard(paths, checks=latest_checks(paths))
        except FileNotFoundError as exc:
            raise fail(str(exc)) from None
    server = serve_dashboard(dashboard_path(paths), port=port)
    console.print(f"dashboard on {server.url}  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def export(
    force: Annotated[
        bool, typer.Option("--force", help="Read the publish again even if it was exported whole already.")
    ] = False,
) -> None:
    """Export the published marts and KPIs as versioned Parquet data products (data/exports/)."""
    from dataops.egress.exports import export_data_products, exports_dir

    paths = settings()
    try:
        report = export_data_products(
            paths, progress=lambda dataset: console.print(f"exporting {dataset}"), force=force
        )
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    if report.already_exported:
        console.print(
            f"publish {report.publish_id} is exported already: {len(report.datasets)} data products in "
            f"{exports_dir(paths)} (--force to read it again)"
        )
        return
    console.print(
        f"{len(report.datasets)} data products in {exports_dir(paths)} (publish {report.publish_id}); "
        f"{len(report.changed)} changed: {', '.join(report.changed) or 'none'}"
    )


def crm_sync(
    full: Annotated[bool, typer.Option("--full", help="Re-send every field (repairs hand edits in the CRM).")] = False,
) -> None:
    """Write each CRM account's enterprise state, delinquent flag and MRR back, where they changed."""
    from application.mock_sources import crm_environment
    from dataops.egress.reverse_etl import CrmSyncError, crm_endpoint, sync_crm

    paths = settings()
    try:
        with crm_environment(paths), progress_bar("CRM sync") as bar:
            url, token = crm_endpoint()
            task = bar.add_task("CRM sync", total=None, detail="")
            report = sync_crm(
                paths, url, token, full=full, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except (CrmSyncError, FileNotFoundError) as exc:
        raise fail(f"{exc}") from None
    console.print(
        f"as of {report.as_of}: {report.accounts_considered} accounts, {report.accounts_patched} updated, "
        f"{report.fields_written} fields written in {report.requests} requests ({report.retries} retries)"
    )
    if report.missing_accounts:
        console.print(f"[yellow]unknown to the CRM:[/] {', '.join(report.missing_accounts[:20])}")

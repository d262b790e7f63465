"""Governance commands: ``sql`` (the gateway's CLI door), ``api serve`` (its HTTP door), ``users``,
``catalog search`` and ``archive``."""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from application.cli.common import console, err_console, fail, parse_date, settings

users_app = typer.Typer(help="Users of the query gateway (roles and tokens).", no_args_is_help=True)
catalog_app = typer.Typer(help="The catalog of published datasets.", no_args_is_help=True)
api_app = typer.Typer(help="The query gateway's HTTP API.", no_args_is_help=True)
archive_app = typer.Typer(
    help="Retention: archive partitions past their retention, list, restore.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command()(sql)
    app.add_typer(users_app, name="users")
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(api_app, name="api")
    app.add_typer(archive_app, name="archive")


def sql(
    statement: Annotated[str, typer.Argument(help="One SELECT query over the published datasets.")],
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    token: Annotated[
        str | None, typer.Option(help="Your gateway token (default: $DATAOPS_TOKEN, else your OS user's mapping).")
    ] = None,
) -> None:
    """Query the analyst warehouse through the gateway: authenticated, authorised, braked and audited."""
    from dataops.governance.formats import to_csv, to_json
    from dataops.governance.gateway import Denied, Gateway
    from dataops.governance.policy import load_policy
    from dataops.governance.users import AuthenticationError, authenticate_os_user, authenticate_token

    if format not in ("table", "csv", "json"):
        raise typer.BadParameter(f"{format!r} is not one of table, csv, json", param_hint="--format")
    paths = settings()
    token = token or os.environ.get("DATAOPS_TOKEN")
    try:
        user = authenticate_token(paths, token) if token else authenticate_os_user(paths)
    except AuthenticationError as exc:
        from dataops.governance import audit

        audit.record(
            paths,
            {
                "user": None,
                "role": None,
                "door": "cli",
                "statement": statement,
                "allowed": False,
                "reason": f"authentication: {exc}",
            },
        )
        raise fail(f"not authenticated: {exc}", code=3) from None
    try:
        result = Gateway(paths, load_policy()).run(user, statement, door="cli")
    except Denied as denied:
        raise fail(f"denied{f' by the {denied.brake}' if denied.brake else ''}: {denied.reason}", code=4) from None
    if format == "json":
        sys.stdout.write(to_json(result) + "\n")
    elif format == "csv":
        sys.stdout.write(to_csv(result))
    else:
        table = Table(*result.columns)
        for row in result.rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="One of the policy's roles (registry/policy.yaml).")],
    expires_days: Annotated[int | None, typer.Option(help="Token lifetime in days (default: no expiry).")] = None,
    os_user: Annotated[str | None, typer.Option(help="OS account that may use the CLI without a token.")] = None,
) -> None:
    """Create (or replace) a gateway user; prints the token once (only its hash is stored)."""
    from dataops.governance.policy import PolicyError, load_policy
    from dataops.governance.users import add_user

    try:
        token = add_user(settings(), load_policy(), name, role, expires_days, os_user)
    except PolicyError as exc:
        raise fail(str(exc)) from None
    console.print(f"user {name} ({role}); token, shown once: [bold]{token}[/]")


@users_app.command("list")
def users_list() -> None:
    """Users and their roles (never their tokens)."""
    from dataops.governance.users import list_users

    for name, entry in sorted(list_users(settings()).items()):
        console.print(f"{name}: {entry}")


@catalog_app.command("search")
def catalog_search(text: Annotated[str, typer.Argument(help="Words to look for.")]) -> None:
    """Find published datasets by name, description, domain notes, tags, caveats or columns."""
    from dataops.core.warehouse import connect
    from dataops.governance.catalog import search

    paths = settings()
    if not paths.analytics_db.exists():
        raise fail("nothing is published yet: run `make run` or `dataops run`")
    with connect(paths.analytics_db, read_only=True) as conn:
        found = search(conn, text)
    if found.height == 0:
        console.print(f"no dataset mentions {text!r}")
        raise typer.Exit(1)
    table = Table()
    table.add_column("dataset", no_wrap=True)  # a name to copy, whole
    for header in ("classification", "owner", "domain", "description", "notes"):
        table.add_column(header)
    for row in found.iter_rows(named=True):
        table.add_row(
            row["dataset"],
            row["classification"],
            row["owner"],
            row["domain"] or "",
            row["description"][:90],
            (row["notes"] or "")[:90],
        )
    console.print(table)


@api_app.command("serve")
def api_serve(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8787,
    host: Annotated[str, typer.Option(help="Interface; loopback unless you mean otherwise.")] = "127.0.0.1",
) -> None:
    """Serve the query gateway over HTTP (bearer tokens; JSON, CSV or Arrow results)."""
    import uvicorn

    from application.api import create_app
    from dataops.governance.policy import load_policy

    console.print(f"query gateway on http://{host}:{port}/v1/query")
    uvicorn.run(create_app(settings(), load_policy()), host=host, port=port, log_level="info")


@archive_app.command("run")
def archive_run(
    as_of: Annotated[str | None, typer.Option(help="Business date retention counts from (default: today).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would move.")] = False,
) -> None:
    """Move partitions past their dataset's retention to data/archive/ (recorded; restorable)."""
    from dataops.governance.archive import archive
    from dataops.governance.metadata import load_manifest, published_datasets

    day = parse_date(as_of, "--as-of") or dt.datetime.now(dt.UTC).date()
    done = archive(settings(), published_datasets(load_manifest()), day, dry_run=dry_run)
    verb = "would archive" if dry_run else "archived"
    for item in done:
        console.print(f"{verb} {item.dataset} {item.period}: {item.rows} rows -> {item.location}")
    console.print(f"{len(done)} period(s) {verb}; publish again to update the catalog")


@archive_app.command("list")
def archive_list() -> None:
    """Everything archived, and what was restored."""
    from dataops.governance.archive import archive_log

    for dataset, period, rows, archived_at, restored_at, location in archive_log(settings()):
        state = f"restored {restored_at:%Y-%m-%d}" if restored_at else "archived"
        console.print(f"{dataset} {period}: {rows} rows, {state} (archived {archived_at:%Y-%m-%d}) {location}")


@archive_app.command("restore")
def archive_restore(
    dataset: Annotated[str, typer.Argument(help="e.g. marts.fct_customer_states_daily or lake.crm.leads")],
    period: Annotated[
        str | None, typer.Argument(help="The month (YYYY-MM) or day (YYYY-MM-DD) archived; omit with --all.")
    ] = None,
    all_periods: Annotated[bool, typer.Option("--all", help="Every archived period of the dataset.")] = False,
) -> None:
    """Bring archived periods back where they were."""
    from dataops.governance.archive import Archived, restore, restore_all

    if (period is None) == (not all_periods):
        raise typer.BadParameter("give a PERIOD or --all (not both)", param_hint="PERIOD")
    try:
        items: list[Archived] = (
            restore_all(settings(), dataset) if all_periods else [restore(settings(), dataset, str(period))]
        )
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise fail(str(exc)) from None
    for item in items:
        console.print(f"restored {item.dataset} {item.period}: {item.rows} rows")
    console.print(f"{len(items)} period(s) restored; publish again to update the catalog")

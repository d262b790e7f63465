"""Governance commands: ``sql`` (the gateway's CLI door), ``api serve`` (its HTTP door), ``users``,
``catalog search`` and ``archive``."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from application.cli.common import console, err_console, fail, parse_date, settings
from dataops.core.settings import DEFAULT_DATA_DIR, Settings, UntrustedSetting, account_name, caller_uid, platform_uid

if TYPE_CHECKING:
    from dataops.governance import audit
    from dataops.governance.gateway import QueryResult
    from dataops.governance.users import FailedTokens, User

STDIN_CHARS = 1 << 20
users_app = typer.Typer(help="Users of the query gateway (roles and tokens).", no_args_is_help=True)
catalog_app = typer.Typer(help="The catalog of published datasets.", no_args_is_help=True)
api_app = typer.Typer(help="The query gateway's HTTP API.", no_args_is_help=True)
pseudonym_app = typer.Typer(help="The key behind the pseudonyms of personal data.", no_args_is_help=True)
archive_app = typer.Typer(
    help="Retention: archive partitions past their retention, list, restore.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command()(sql)
    app.add_typer(users_app, name="users")
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(api_app, name="api")
    app.add_typer(pseudonym_app, name="pseudonym")
    app.add_typer(archive_app, name="archive")


def sql(
    statement: Annotated[str, typer.Argument(help="One SELECT query over the published datasets ('-': read stdin).")],
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding your gateway token (mode 600). Default: $DATAOPS_TOKEN, else your OS account."
        ),
    ] = None,
    token: Annotated[str | None, typer.Option(hidden=True, help="Refused: the process list would show it.")] = None,
) -> None:
    """Query the analyst warehouse through the gateway: authenticated, authorised, braked and audited."""
    from dataops.governance import audit

    if format not in ("table", "csv", "json"):
        raise typer.BadParameter(f"{format!r} is not one of table, csv, json", param_hint="--format")
    if statement == "-":
        statement = sys.stdin.read(STDIN_CHARS)  # past the statement size limit, which refuses it
    entry = audit.Entry("cli", statement, source=f"cli:{account_name(caller_uid())}")
    try:
        paths = settings()
    except UntrustedSetting as exc:  # audited where the platform's own settings keep it
        entry.refuse("denied", str(exc))
        _record_or_fail(Settings(DEFAULT_DATA_DIR), entry)
        raise fail(str(exc), code=3) from None
    result = _answer(paths, statement, entry, token_file, token)
    _record_or_fail(paths, entry)
    if isinstance(result, int):
        label = f"denied by the {entry['brake']}" if entry["brake"] else str(entry["outcome"]).replace("_", " ")
        raise fail(f"{label}: {entry['reason']}", code=result)
    _print(result, format)


def _answer(
    paths: Settings, statement: str, entry: audit.Entry, token_file: Path | None, token: str | None
) -> QueryResult | int:
    """The result, or the exit code of the refusal, which is in ``entry``: 3 the caller is not who may ask
    (no valid token or mapping, slowed down, a setting not theirs to choose), 4 the query was refused, 1 the
    gateway failed."""
    from dataops.governance.gateway import Denied, Gateway
    from dataops.governance.policy import load_policy
    from dataops.governance.users import AuthenticationError, FailedTokens, SlowedDown

    try:
        policy = load_policy()
        if token is not None:
            raise AuthenticationError(
                "a token on the command line is visible to every account in the process list: use --token-file "
                "or DATAOPS_TOKEN (and replace the token you just typed: `dataops users add` again)"
            )
        limiter = FailedTokens(paths, policy.server)
        limiter.check(str(entry["source"]))
        user = _user(paths, limiter, str(entry["source"]), token_file)
        return Gateway(paths, policy).run(user, statement, door="cli", entry=entry)
    except SlowedDown as exc:
        entry.refuse("unauthenticated", f"authentication: {exc}", brake="failed_tokens")
    except AuthenticationError as exc:
        entry.refuse("unauthenticated", f"authentication: {exc}")
    except UntrustedSetting as exc:
        entry.refuse("denied", str(exc))
    except Denied as denied:  # the gateway filled in the entry
        return 1 if denied.outcome == "error" else 4
    except Exception as exc:  # anything else: refused, closed, audited
        entry.refuse("error", f"the query was not answered ({type(exc).__name__}: {exc})")
        return 1
    return 3


def _user(paths: Settings, limiter: FailedTokens, source: str, token_file: Path | None) -> User:
    from dataops.governance.users import AuthenticationError, authenticate_os_user, authenticate_token

    token = _read_token(token_file) if token_file else os.environ.get("DATAOPS_TOKEN")
    try:
        return authenticate_token(paths, token.strip()) if token else authenticate_os_user(paths)
    except AuthenticationError as exc:
        if exc.failed_token:
            limiter.failed(source)
        raise


def _read_token(path: Path) -> str:
    from dataops.governance.users import AuthenticationError

    try:
        mode, token = path.stat().st_mode, path.read_text().strip()
    except OSError as exc:
        raise AuthenticationError(f"the token file cannot be read ({exc.strerror or exc})") from None
    if mode & 0o077:
        raise AuthenticationError(f"{path} is readable by other accounts: `chmod 600 {path}`")
    return token


def _record_or_fail(paths: Settings, entry: audit.Entry) -> None:
    """The audit line first: a request that cannot be audited is not answered."""
    from dataops.governance import audit

    try:
        audit.record(paths, entry)
    except OSError as exc:
        raise fail(f"the audit log cannot be written ({exc.strerror}); nothing is answered", code=1) from None


def _print(result: QueryResult, format: str) -> None:
    from dataops.governance.formats import to_csv, to_json

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
    expires_days: Annotated[
        int | None, typer.Option(min=1, help="Token lifetime in days, at least 1 (default: no expiry).")
    ] = None,
    os_user: Annotated[str | None, typer.Option(help="OS account that may use the CLI without a token.")] = None,
) -> None:
    """Create (or replace) a gateway user; prints the token once (only its hash is stored)."""
    from dataops.governance.policy import PolicyError, load_policy
    from dataops.governance.users import add_user

    try:
        token = add_user(settings(), load_policy(), name, role, expires_days, os_user)
    except (PolicyError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"user {name} ({role}); token, shown once: [bold]{token}[/]")


@users_app.command("revoke")
def users_revoke(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Revoke a user at once: their token and OS mapping stop working (the entry stays for the audit)."""
    from dataops.governance.users import revoke_user

    try:
        revoke_user(settings(), name)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    console.print(f"user {name} revoked")


@users_app.command("list")
def users_list() -> None:
    """Users and their roles (never their tokens)."""
    from dataops.governance.users import list_users

    for name, entry in sorted(list_users(settings()).items()):
        console.print(f"{name}: {entry}")


@pseudonym_app.command("rotate")
def pseudonym_rotate() -> None:
    """Replace the pseudonym key; the next publish re-pseudonymises everything (docs/governance.md)."""
    from dataops.governance.pseudonym import rotate_key

    old, new = rotate_key(settings())
    console.print(
        f"pseudonym key {old or '(none)'} replaced by {new} at {settings().pseudonym_key_file}; run the pipeline "
        "(or `dataops publish`) to publish with it: every pseudonym changes, and no longer joins with old ones"
    )


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
    """Serve the query gateway over HTTP (bearer tokens; JSON, CSV, Arrow or Parquet results) and the query page."""
    import uvicorn

    from application.api import create_app
    from dataops.governance.policy import load_policy

    if os.geteuid() != platform_uid():
        raise fail(
            f"the gateway runs as the platform's account ({account_name(platform_uid())}), which owns its files; "
            "see docs/governance.md"
        )
    policy = load_policy()
    console.print(f"query gateway on http://{host}:{port}/v1/query; the query page on http://{host}:{port}/query/")
    app = create_app(settings(), policy, warm_workers=min(2, policy.server.max_concurrent_queries))
    uvicorn.run(app, host=host, port=port, log_level="info")


@archive_app.command("run")
def archive_run(
    as_of: Annotated[str | None, typer.Option(help="Business date retention counts from (default: today).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would move.")] = False,
) -> None:
    """Move partitions past their dataset's retention to data/archive/ (recorded; restorable)."""
    from dataops.governance.archive import archive, plan_lake
    from dataops.governance.metadata import load_manifest, published_datasets

    day = parse_date(as_of, "--as-of") or dt.datetime.now(dt.UTC).date()
    done = archive(settings(), published_datasets(load_manifest()), day, dry_run=dry_run)
    verb = "would archive" if dry_run else "archived"
    for item in done:
        console.print(f"{verb} {item.dataset} {item.period}: {item.rows} rows -> {item.location}")
    for kept in plan_lake(settings(), day)[1]:  # past retention, in a block's file with younger days (0086)
        console.print(str(kept))
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

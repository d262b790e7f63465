"""``dataops docs serve``: the dbt project's documentation, with its overview page, in a browser."""

from __future__ import annotations

from typing import Annotated

import typer

from application.cli.common import console, fail, settings

docs_app = typer.Typer(help="The dbt project's documentation (models, columns, tests, lineage).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(docs_app, name="docs")


@docs_app.command("serve")
def docs_serve(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8580,
    generate: Annotated[bool, typer.Option(help="Generate the site first (dbt docs generate).")] = True,
) -> None:
    """Generate the dbt documentation for this data directory and serve it on loopback."""
    from application.docs_site import docs_site
    from dataops.governance.definition_versions import adopted_registry
    from dataops.transform.docs import DocsError, docs_dir, generate_docs

    paths = settings()
    if generate:
        console.print("generating the documentation (dbt docs generate)…")
        try:
            site = generate_docs(paths, adopted_registry(paths))
        except DocsError as exc:
            raise fail(str(exc)) from None
        if not site.with_catalog:
            console.print("[yellow]a run holds the build warehouse: column types and row counts are left out[/]")
    server = docs_site(docs_dir(paths), "127.0.0.1", port)
    console.print(f"dbt docs on {server.url}  (the project overview first; Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

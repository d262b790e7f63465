"""``dataops definitions ...``: propose a definition change, see its impact, adopt a version, roll back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from application.cli.common import console, fail, settings

definitions_app = typer.Typer(
    help="Definition changes: propose (impact report), adopt (restate with the cause), roll back.",
    no_args_is_help=True,
)


def _page() -> Path:
    from dataops.egress.definitions_page import build_definitions_page

    return build_definitions_page(settings())


def register(app: typer.Typer) -> None:
    app.add_typer(definitions_app, name="definitions")


@definitions_app.command()
def propose(file: Annotated[Path, typer.Argument(help="The change: a YAML file (docs/definitions.md).")]) -> None:
    """Build the KPIs under the change beside the adopted ones and write the impact report (analysts see
    nothing until it is adopted)."""
    from dataops.publish.definition_change import DefinitionRefused, propose
    from registry.loader import RegistryError

    try:
        proposal = propose(settings(), file)
    except (DefinitionRefused, RegistryError) as exc:
        raise fail(f"refused: {exc}") from None
    change = proposal.change
    console.print(
        f"{change.label} ({change.mode}) against v{proposal.from_version}: {proposal.kpi_values_moved} daily KPI "
        f"values move on {proposal.days_moved} days; {proposal.customers_moved} customers move"
    )
    for name, path in proposal.tables.items():
        console.print(f"  {name}: {path}")
    console.print(f"impact page: {_page()}  (dataops dashboard serve: /definitions.html)")
    console.print(f"adopt it with: dataops definitions adopt {change.label} --approved-by USER ...")


@definitions_app.command()
def adopt(
    version: Annotated[str, typer.Argument(help="The version to adopt (v2); the previous one rolls back.")],
    approved_by: Annotated[
        list[str], typer.Option("--approved-by", help="A user approving (one per role the policy requires).")
    ],
    reason: Annotated[str | None, typer.Option(help="Why (default: the change's own reason).")] = None,
) -> None:
    """Publish the KPIs under VERSION; every changed value is restated with the change as its cause."""
    from dataops.governance.definition_versions import ApprovalError
    from dataops.publish.definition_change import DefinitionRefused, adopt
    from registry.loader import RegistryError

    try:
        adoption = adopt(settings(), version, approved_by, reason)
    except (DefinitionRefused, ApprovalError, RegistryError) as exc:
        raise fail(f"refused: {exc}") from None
    approvals = ", ".join(f"{a.user} ({a.role})" for a in adoption.approvals)
    console.print(f"adopted v{adoption.version} (was v{adoption.from_version}), approved by {approvals}")
    console.print(f"{adoption.publish.restatements} published values restated: {adoption.cause}")
    console.print(f"impact page: {_page()}")


@definitions_app.command()
def history() -> None:
    """Each changed definition's value at every version, and this platform's proposals and adoptions."""
    from dataops.governance.definition_versions import adopted_version, definition_tables

    here = settings()
    tables = definition_tables(here)
    console.print(f"adopted: v{adopted_version(here)}")
    for row in tables["history"].iter_rows(named=True):
        console.print(
            f"{row['definition']} {row['version']} = {row['value']} ({row['mode']}; by {row['author']}, approved "
            f"{row['approved'] or '-'}, effective {row['effective'] or '-'}): {row['reason']}",
            markup=False,
            highlight=False,
        )
    for row in tables["adoptions"].iter_rows(named=True):
        console.print(
            f"{row['at']} {row['event']} {row['version']} (from {row['from_version']}) by {row['by']}: {row['reason']}",
            markup=False,
            highlight=False,
        )

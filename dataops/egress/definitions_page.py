"""The dashboard's page for definition changes: each proposal's impact report and each definition's history.

It reads the definitions' record of the data directory (dataops/governance/definition_versions.py), not the
analyst file, so the council sees a proposal's impact before it is adopted and published. One offline HTML
file beside the dashboard, written aside and moved into place like it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from dataops.core.settings import Settings
from dataops.egress.dashboard import CONTENT_SECURITY_POLICY, DEFINITIONS_PAGE, TEMPLATES, dashboard_path
from dataops.governance.definition_versions import adopted_version, definition_tables

CUSTOMERS_SHOWN = 50


def definitions_page_path(settings: Settings) -> Path:
    return dashboard_path(settings).with_name(DEFINITIONS_PAGE)


@dataclass
class KpiImpact:
    kpi_name: str
    days_moved: int
    old_total: Decimal
    new_total: Decimal
    months: list[dict[str, Any]]


def _kpi_impacts(impact: pl.DataFrame) -> list[KpiImpact]:
    """Per KPI that moves: on how many days, and each month's old, new and difference."""
    out = []
    for (kpi,), rows in impact.group_by("kpi_name", maintain_order=True):
        daily = rows.filter(pl.col("grain") == "day")
        moved = daily.filter(pl.col("difference") != 0)
        if moved.height == 0:
            continue
        months = rows.filter(pl.col("grain") == "month").sort("period")
        out.append(
            KpiImpact(
                str(kpi),
                moved.height,
                Decimal(str(daily["old_value"].sum())),
                Decimal(str(daily["new_value"].sum())),
                [
                    {
                        "month": m["period"].strftime("%B %Y"),
                        "old": m["old_value"],
                        "new": m["new_value"],
                        "difference": m["difference"],
                    }
                    for m in months.iter_rows(named=True)
                ],
            )
        )
    return out


def _movements(moved: pl.DataFrame) -> dict[str, int]:
    counts = moved.group_by("movement").agg(pl.col("customer_id").n_unique()).sort("movement")
    return {str(movement): int(n) for movement, n in counts.rows()}


def render_definitions_page(settings: Settings) -> str:
    tables = definition_tables(settings)
    impact, customers = tables["impact_kpis"], tables["impact_customers"]
    proposals = []
    for label in sorted(set(impact["proposal"].to_list()), key=lambda v: int(v.lstrip("v")), reverse=True):
        moved = customers.filter(pl.col("proposal") == label)
        proposals.append(
            {
                "label": label,
                "events": [e for e in tables["adoptions"].iter_rows(named=True) if e["version"] == label],
                "kpis": _kpi_impacts(impact.filter(pl.col("proposal") == label).sort("kpi_name", "grain", "period")),
                "customers": moved.head(CUSTOMERS_SHOWN).to_dicts(),
                "customer_count": moved["customer_id"].n_unique(),
                "movements": _movements(moved),
            }
        )
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template("definitions.html.j2").render(
        csp=CONTENT_SECURITY_POLICY,
        adopted=f"v{adopted_version(settings)}",
        proposals=proposals,
        history=tables["history"].to_dicts(),
        shown=CUSTOMERS_SHOWN,
    )


def build_definitions_page(settings: Settings, output: Path | None = None) -> Path:
    """Write the page (after a proposal or an adoption, and with the dashboard); returns its path."""
    target = output or definitions_page_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}")
    staged.write_text(render_definitions_page(settings), encoding="utf-8")
    os.chmod(staged, 0o644)
    os.replace(staged, target)  # a reader never sees half of it
    return target

"""The KPI dashboard: one self-contained HTML file built from the general analyst warehouse.

The executive wants to look, not query. The dashboard is a static file so that it can be opened from disk,
mailed, archived next to a publish, or served read-only on loopback, and it needs no network at all:
plotly.js is inlined once, every figure is inlined as JSON, the style is inlined, and a Content Security
Policy in the page forbids the browser from fetching anything. It reads only the analyst warehouse (what
every analyst may see, personal data pseudonymised) and shows only aggregates of it.

The same input gives the same bytes (sorted queries, no build timestamp), so a rebuild after a publish that
changed nothing changes nothing. Freshness is the one judgement that depends on the clock: the file states
it as checked at build time (``dataops.publish.status``) and the page re-checks it with the same rule when opened,
because a dashboard nobody rebuilt (publishing stopped) is exactly when it must not keep saying "fresh".
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import plotly
import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from dataops.core.digest import digest, files_digest
from dataops.core.settings import Settings
from dataops.core.warehouse import connect, query_frame, scalar
from dataops.publish.status import CheckSummary, Status, platform_status
from registry.loader import load_registry

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_PORT = 8765
# Lifecycle order for display (the registry lists states in evaluation order, first match wins).
CUSTOMER_STATES = ("prospect", "onboarding", "active", "paused", "churned")
STATE_COLOURS = {
    "prospect": "#b0b7c3",
    "onboarding": "#7fb3e0",
    "active": "#2e9e5b",
    "paused": "#f0a030",
    "churned": "#d0463c",
}
STACK_ORDER = ("active", "paused", "churned", "onboarding", "prospect")
FUNNEL_STAGES = ("leads", "MQLs", "SQLs", "won")
# Months of the funnel in calm blues and greens: orange and red mean provisional and restated on this page.
MONTH_COLOURS = ("#1e40af", "#3b82f6", "#93c5fd", "#0f766e", "#14b8a6", "#99f6e4", "#4338ca", "#a5b4fc")
FINAL_COLOUR = "#2563eb"
PROVISIONAL_COLOUR = "#d97706"
RESTATED_COLOUR = "#dc2626"
# The page may run its own inline scripts and styles and show inline images (plotly's own icons); nothing else,
# in particular no request to any server: the browser enforces "works with no network" for us.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)
RESTATEMENT_ROWS_SHOWN = 25


def dashboard_path(settings: Settings) -> Path:
    """Where the dashboard is written by default (next to the data, never committed)."""
    return settings.data_dir / "dashboard" / "index.html"


@dataclass(frozen=True)
class KpiDefinition:
    """A KPI as the registry published with the data defines it."""

    name: str
    description: str
    formula: str
    unit: str
    kind: str
    owner: str
    version: str


@dataclass
class DashboardData:
    """Everything the page shows, read in one go from the analyst warehouse."""

    definitions: list[KpiDefinition]
    daily: pl.DataFrame
    monthly: pl.DataFrame
    restatements: pl.DataFrame
    states: pl.DataFrame
    funnel: pl.DataFrame
    status: Status
    restatement_count: int = 0
    missing: list[str] = field(default_factory=list)


def build_dashboard(
    settings: Settings, output: Path | None = None, now: dt.datetime | None = None, checks: CheckSummary | None = None
) -> Path:
    """Write the dashboard for the current publish; returns its path.

    ``now`` is the moment freshness is judged at build time (default: the clock); with the same warehouse
    and the same ``now`` the file is byte for byte the same. The file is written aside and moved into place,
    so a reader (or the server) never sees half of it.
    """
    target = output or dashboard_path(settings)
    _write_page(target, render_dashboard(load_dashboard_data(settings, now, platform_status(settings, now, checks))))
    return target


def _write_page(target: Path, html: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.", delete=False
    ) as handle:
        handle.write(html)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, target)


def refresh_dashboard(
    settings: Settings, now: dt.datetime | None = None, checks: CheckSummary | None = None
) -> tuple[Path, bool]:
    """The pipeline's dashboard, written only when what it would show changed (docs/decisions/0021); returns
    its path and whether it was written.

    A page is a function of the publish it reads and the status it shows (freshness at ``now``, failed
    checks, quarantine): the file keeps a digest of the status, which names the publish, and of the code
    that draws it, in a ``<meta>``. Only the status is read to compare; the KPIs only when the page changes.
    """
    target = dashboard_path(settings)
    status = platform_status(settings, now, checks)
    if _made_from_of(target) == made_from(status):
        return target, False
    _write_page(target, render_dashboard(load_dashboard_data(settings, now, status)))
    return target, True


def made_from(status: Status) -> str:
    """A digest of the status the page shows (its publish included) and of the code that draws it."""
    return digest({"status": asdict(status), "code": _code_digest(), "plotly": plotly.__version__})


@functools.cache
def _code_digest() -> str:
    """The drawing code, read once per process: comparing and then drawing a page both need it."""
    return files_digest([Path(__file__), *sorted(TEMPLATES.iterdir())])


MADE_FROM = re.compile(r'<meta name="dataops-made-from" content="([0-9a-f]{64})">')


def _made_from_of(page: Path) -> str | None:
    if not page.exists():
        return None
    with page.open(encoding="utf-8", errors="replace") as handle:
        found = MADE_FROM.search(handle.read(4096))  # in the head, before the inlined plotly.js
    return found.group(1) if found else None


def load_dashboard_data(
    settings: Settings, now: dt.datetime | None = None, status: Status | None = None
) -> DashboardData:
    """Read the published KPIs, restatements, customer states and funnel (aggregates only)."""
    if not settings.analytics_db.exists():
        raise FileNotFoundError(f"no analyst warehouse at {settings.analytics_db}: nothing published yet")
    missing: list[str] = []
    with connect(settings.analytics_db, read_only=True) as conn:
        present = {
            f"{s}.{t}"
            for s, t in conn.execute("select table_schema, table_name from information_schema.tables").fetchall()
        }

        def frame(needs: tuple[str, ...], sql: str, empty: dict[str, Any]) -> pl.DataFrame:
            absent = [name for name in needs if name not in present]
            if absent:
                missing.extend(absent)
                return pl.DataFrame(schema=empty)
            return query_frame(conn, sql)

        definitions = _definitions(conn, "reference.registry_kpis" in present)
        daily = frame(
            ("kpis.kpi_daily",),
            """
            select date_day, kpi_name, cast(value as double) as value, unit, is_final, definition_version
            from kpis.kpi_daily order by kpi_name, date_day
            """,
            {"date_day": pl.Date, "kpi_name": pl.String, "value": pl.Float64, "unit": pl.String,
             "is_final": pl.Boolean, "definition_version": pl.String},
        )  # fmt: skip
        monthly = frame(
            ("kpis.kpi_monthly",),
            """
            select month_start_date, kpi_name, cast(value as double) as value, is_complete_month, is_final
            from kpis.kpi_monthly order by kpi_name, month_start_date
            """,
            {"month_start_date": pl.Date, "kpi_name": pl.String, "value": pl.Float64,
             "is_complete_month": pl.Boolean, "is_final": pl.Boolean},
        )  # fmt: skip
        restatements = frame(
            ("publish.kpi_restatements",),
            """
            select kpi_name, period, grain, cast(old_value as double) as old_value,
                   cast(new_value as double) as new_value, was_final, restated_at, cause
            from publish.kpi_restatements order by restated_at desc, kpi_name, period, grain, cause
            """,
            {"kpi_name": pl.String, "period": pl.Date, "grain": pl.String, "old_value": pl.Float64,
             "new_value": pl.Float64, "was_final": pl.Boolean, "restated_at": pl.Datetime("us", "UTC"),
             "cause": pl.String},
        )  # fmt: skip
        states = frame(
            ("marts.fct_customer_states_daily",),
            """
            select date_day, state, count(*) as customers
            from marts.fct_customer_states_daily group by all order by date_day, state
            """,
            {"date_day": pl.Date, "state": pl.String, "customers": pl.Int64},
        )
        # Each stage as the marts define it: leads as the CRM holds them, MQLs and SQLs as people (the mqls and
        # sqls KPIs count the same dim_people dates), won opportunities by close date (as opportunities_won).
        funnel = frame(
            ("marts.fct_leads", "marts.dim_people", "marts.fct_opportunities"),
            """
            select month, stage, count(*) as count from (
                select date_trunc('month', created_date) as month, 'leads' as stage
                from marts.fct_leads where created_date is not null
                union all
                select date_trunc('month', mql_date), 'MQLs' from marts.dim_people where mql_date is not null
                union all
                select date_trunc('month', sql_date), 'SQLs' from marts.dim_people where sql_date is not null
                union all
                select date_trunc('month', closed_date), 'won' from marts.fct_opportunities
                where is_won and closed_date is not null
            ) group by all order by month, stage
            """,
            {"month": pl.Date, "stage": pl.String, "count": pl.Int64},
        )
        restatement_count = (
            int(scalar(conn, "select count(*) from publish.kpi_restatements"))
            if "publish.kpi_restatements" in present
            else 0
        )
    status = status or platform_status(settings, now)
    return DashboardData(
        definitions=definitions,
        daily=daily,
        monthly=monthly,
        restatements=restatements,
        states=states,
        funnel=funnel,
        status=status,
        restatement_count=restatement_count,
        missing=sorted(set(missing)),
    )


def _definitions(conn: duckdb.DuckDBPyConnection, published: bool) -> list[KpiDefinition]:
    """The registry as published with the data (the definitions these values were computed under); the
    registry file only when the warehouse predates the published copy."""
    if published:
        rows = conn.execute("""
            select kpi_name, description, formula, unit, kind, owner, definition_version
            from reference.registry_kpis order by kpi_order, kpi_name
        """).fetchall()
        return [KpiDefinition(*(str(v) for v in row)) for row in rows]

    registry = load_registry()
    return [
        KpiDefinition(k.name, k.description, k.formula, k.unit, k.kind, k.owner, registry.version)
        for k in registry.kpis
    ]


# --- rendering ---------------------------------------------------------------------------------------------------


def render_dashboard(data: DashboardData) -> str:
    """The page as a string: plotly.js once in the head, every figure as inline JSON."""
    known = {d.name for d in data.definitions}
    extra = sorted(set(data.daily["kpi_name"].unique().to_list()) - known)
    definitions = data.definitions + [
        KpiDefinition(name, "not in the published registry", "", _first_unit(data.daily, name), "stock", "", "")
        for name in extra
    ]
    panels = [_panel(d, data) for d in definitions]
    figures = [(p["chart_id"], p.pop("figure")) for p in panels if p.get("figure") is not None]
    figures.append(("chart-customer-states", _states_figure(data.states)))
    figures.append(("chart-lead-funnel", _funnel_figure(data.funnel)))
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    template = environment.get_template("dashboard.html.j2")
    return template.render(
        made_from=made_from(data.status),
        csp=CONTENT_SECURITY_POLICY,
        plotlyjs=get_plotlyjs(),
        plotly_version=plotly.__version__,
        status=_status_view(data),
        panels=panels,
        figures=[(chart_id, _figure_json(fig)) for chart_id, fig in figures],
        as_of=_iso(data.status.as_of),
        registry_version=", ".join(sorted({d.version for d in data.definitions if d.version})),
        missing=data.missing,
        funnel_totals=_funnel_totals(data.funnel),
    )


def _iso(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def _first_unit(daily: pl.DataFrame, kpi: str) -> str:
    units = daily.filter(pl.col("kpi_name") == kpi)["unit"]
    return str(units[0]) if len(units) else ""


def format_value(value: float | None, unit: str) -> str:
    """A KPI value as people read it: counts whole, money with cents and its currency."""
    if value is None:
        return "–"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "USD":
        return f"${value:,.2f}" if value >= 0 else f"−${-value:,.2f}"
    return f"{value:,.2f} {unit}"


def _hover_format(unit: str) -> str:
    return ",.0f" if unit == "count" else ",.2f"


def _panel(definition: KpiDefinition, data: DashboardData) -> dict[str, Any]:
    name = definition.name
    daily = data.daily.filter(pl.col("kpi_name") == name).sort("date_day")
    monthly = data.monthly.filter(pl.col("kpi_name") == name).sort("month_start_date")
    restated = data.restatements.filter(pl.col("kpi_name") == name)
    unit = definition.unit or _first_unit(data.daily, name)
    latest = daily.row(-1, named=True) if daily.height else None
    versions = sorted(set(daily["definition_version"].drop_nulls().to_list()))
    rows = [
        {
            "period": _iso(r["period"]),
            "grain": r["grain"],
            "old": format_value(r["old_value"], unit),
            "new": format_value(r["new_value"], unit),
            "change": format_value(r["new_value"] - r["old_value"], unit),
            "was_final": r["was_final"],
            "restated_at": f"{r['restated_at']:%Y-%m-%d %H:%M} UTC",
            "cause": r["cause"],
        }
        for r in restated.head(RESTATEMENT_ROWS_SHOWN).iter_rows(named=True)
    ]
    return {
        "name": name,
        "anchor": f"panel-{name}",
        "chart_id": f"chart-{name}",
        "definition": definition,
        "value_versions": versions if versions and versions != [definition.version] else [],
        "latest": (
            {
                "date": _iso(latest["date_day"]),
                "value": format_value(latest["value"], unit),
                "is_final": latest["is_final"],
            }
            if latest
            else None
        ),
        "monthly": [
            {
                "month": f"{r['month_start_date']:%Y-%m}",
                "value": format_value(r["value"], unit),
                "is_final": r["is_final"],
                "is_complete": r["is_complete_month"],
            }
            for r in monthly.iter_rows(named=True)
        ],
        "restatements": rows,
        "restatements_more": max(restated.height - RESTATEMENT_ROWS_SHOWN, 0),
        "restated": restated.height,
        "provisional_days": int((~daily["is_final"]).sum()) if daily.height else 0,
        "figure": _kpi_figure(definition, unit, daily, monthly, restated) if daily.height else None,
    }


def _layout(fig: go.Figure, height: int) -> None:
    """One light look for every figure, without plotly's bulky default template in each of them."""
    fig.update_layout(
        template="none",
        height=height,
        margin={"l": 56, "r": 16, "t": 28, "b": 36},
        font={"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12, "color": "#1f2937"},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
    )
    fig.update_xaxes(showgrid=False, linecolor="#d1d5db", ticks="outside", tickcolor="#d1d5db")
    fig.update_yaxes(gridcolor="#eef0f3", zerolinecolor="#d1d5db", linecolor="#d1d5db")


def _kpi_figure(
    definition: KpiDefinition, unit: str, daily: pl.DataFrame, monthly: pl.DataFrame, restated: pl.DataFrame
) -> go.Figure:
    """Daily trend (final solid, provisional dashed and hollow in a shaded band), restated days as red
    diamonds with old, new and cause on hover, and the monthly values beside it (provisional hatched)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], horizontal_spacing=0.07)
    number = _hover_format(unit)
    final = daily.filter(pl.col("is_final"))
    provisional = daily.filter(~pl.col("is_final"))
    hatched = {"shape": "/", "fgcolor": PROVISIONAL_COLOUR, "bgcolor": "#fff7e6", "solidity": 0.3}
    stock = definition.kind != "flow"

    def dates(frame: pl.DataFrame, column: str = "date_day") -> list[str]:
        return [d.isoformat() for d in frame[column]]

    def values(frame: pl.DataFrame, column: str = "value") -> list[float]:
        return [float(v) for v in frame[column]]

    if stock:
        fig.add_trace(
            go.Scatter(
                name="final",
                x=dates(final),
                y=values(final),
                mode="lines",
                line={"color": FINAL_COLOUR, "width": 2},
                hovertemplate=f"%{{x}}<br>%{{y:{number}}} (final)<extra></extra>",
            ),
            row=1,
            col=1,
        )
        if final.height and provisional.height:  # joins the two lines; carries no value of its own
            joint = pl.concat([final.tail(1), provisional.head(1)])
            fig.add_trace(
                go.Scatter(
                    name="final → provisional",
                    x=dates(joint),
                    y=values(joint),
                    mode="lines",
                    line={"color": PROVISIONAL_COLOUR, "width": 1.5, "dash": "dot"},
                    hoverinfo="skip",
                    showlegend=False,
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                name="provisional",
                x=dates(provisional),
                y=values(provisional),
                mode="lines+markers",
                line={"color": PROVISIONAL_COLOUR, "width": 2, "dash": "dash"},
                marker={"symbol": "circle-open", "size": 7, "color": PROVISIONAL_COLOUR, "line": {"width": 1.5}},
                hovertemplate=f"%{{x}}<br>%{{y:{number}}} (provisional: flash, month not closed)<extra></extra>",
            ),
            row=1,
            col=1,
        )
    else:
        fig.add_trace(
            go.Bar(
                name="final",
                x=dates(final),
                y=values(final),
                marker={"color": FINAL_COLOUR},
                hovertemplate=f"%{{x}}<br>%{{y:{number}}} (final)<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                name="provisional",
                x=dates(provisional),
                y=values(provisional),
                marker={"color": "#fde6bf", "line": {"color": PROVISIONAL_COLOUR, "width": 1}, "pattern": hatched},
                hovertemplate=f"%{{x}}<br>%{{y:{number}}} (provisional: flash, month not closed)<extra></extra>",
            ),
            row=1,
            col=1,
        )
    if provisional.height:
        first, last = provisional["date_day"].min(), provisional["date_day"].max()
        assert isinstance(first, dt.date) and isinstance(last, dt.date)
        half_day = dt.timedelta(hours=12)
        fig.add_vrect(
            x0=(dt.datetime.combine(first, dt.time()) - half_day).isoformat(sep=" "),
            x1=(dt.datetime.combine(last, dt.time()) + half_day).isoformat(sep=" "),
            fillcolor="#fff4d6",
            opacity=0.7,
            layer="below",
            line_width=0,
            annotation_text="provisional",
            annotation_position="top left",
            annotation_font={"color": PROVISIONAL_COLOUR, "size": 11},
            row=1,
            col=1,
        )
    daily_restated = restated.filter(pl.col("grain") == "day").sort("period", "restated_at")
    if daily_restated.height:
        fig.add_trace(
            go.Scatter(
                name="restated",
                x=dates(daily_restated, "period"),
                y=values(daily_restated, "new_value"),
                mode="markers",
                marker={
                    "symbol": "diamond",
                    "size": 11,
                    "color": RESTATED_COLOUR,
                    "line": {"color": "#fff", "width": 1},
                },
                customdata=[
                    [
                        float(r["old_value"]),
                        float(r["new_value"]),
                        _shorten(r["cause"]),
                        "final" if r["was_final"] else "provisional",
                        f"{r['restated_at']:%Y-%m-%d %H:%M} UTC",
                    ]
                    for r in daily_restated.iter_rows(named=True)
                ],
                hovertemplate=(
                    f"restated %{{x}} (was %{{customdata[3]}})<br>old %{{customdata[0]:{number}}} → "
                    f"new %{{customdata[1]:{number}}}<br>%{{customdata[2]}}<br>on %{{customdata[4]}}<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
    month_final = monthly.filter(pl.col("is_final"))
    month_provisional = monthly.filter(~pl.col("is_final"))
    month_label = "month end" if stock else "month total"
    fig.add_trace(
        go.Bar(
            name="monthly final",
            x=[f"{d:%Y-%m}" for d in month_final["month_start_date"]],
            y=values(month_final),
            marker={"color": FINAL_COLOUR},
            hovertemplate=f"%{{x}}: %{{y:{number}}} ({month_label}, final)<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Bar(
            name="monthly provisional",
            x=[f"{d:%Y-%m}" for d in month_provisional["month_start_date"]],
            y=values(month_provisional),
            marker={"color": "#fde6bf", "line": {"color": PROVISIONAL_COLOUR, "width": 1}, "pattern": hatched},
            text=["provisional" if complete else "to date" for complete in month_provisional["is_complete_month"]],
            textposition="inside",
            insidetextanchor="start",
            textangle=-90,
            textfont={"color": "#7c2d12", "size": 11},
            hovertemplate=f"%{{x}}: %{{y:{number}}} ({month_label}, provisional)<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    _layout(fig, 300)
    fig.update_layout(barmode="overlay", bargap=0.15)
    fig.update_xaxes(type="category", categoryorder="category ascending", row=1, col=2)
    for col in (1, 2):
        if unit == "count":  # whole things: no 500m ticks, and steps of one while the numbers are small
            small = daily.height and float(daily["value"].abs().max() or 0) <= 6  # type: ignore[arg-type]
            fig.update_yaxes(tickformat=",~g", dtick=1 if small and col == 1 else None, row=1, col=col)
        else:
            fig.update_yaxes(tickformat="~s", tickprefix="$" if unit == "USD" else "", row=1, col=col)
    return fig


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _states_figure(states: pl.DataFrame) -> go.Figure:
    """Customers (ultimate parents) by state at each day's end, stacked in lifecycle order."""
    fig = go.Figure()
    present = set(states["state"].unique().to_list())
    lifecycle = [s for s in CUSTOMER_STATES if s in present] + sorted(present - set(CUSTOMER_STATES))
    # Stacked from the bottom with the customers the business has (active first) and the many prospects on
    # top, so that the small states are read against the axis; the legend keeps the lifecycle order.
    order = [s for s in STACK_ORDER if s in present] + [s for s in lifecycle if s not in STACK_ORDER]
    days = sorted(set(states["date_day"].to_list()))
    counts = {(r["date_day"], r["state"]): r["customers"] for r in states.iter_rows(named=True)}
    for state in order:
        fig.add_trace(
            go.Scatter(
                name=state,
                x=[d.isoformat() for d in days],
                y=[int(counts.get((d, state), 0)) for d in days],
                mode="lines",
                stackgroup="states",
                legendrank=lifecycle.index(state) + 1,
                line={"width": 0.5, "color": STATE_COLOURS.get(state, "#6b7280")},
                hovertemplate=f"%{{x}}<br>{state}: %{{y:,d}}<extra></extra>",
            )
        )
    _layout(fig, 340)
    fig.update_layout(hovermode="x unified", legend_traceorder="normal")
    return fig


def _funnel_figure(funnel: pl.DataFrame) -> go.Figure:
    """Leads, MQLs, SQLs and won per month: each stage counted in the month it was reached."""
    fig = go.Figure()
    counts = {(r["month"], r["stage"]): r["count"] for r in funnel.iter_rows(named=True)}
    for i, month in enumerate(sorted(set(funnel["month"].to_list()))):
        fig.add_trace(
            go.Funnel(
                name=f"{month:%Y-%m}",
                marker={"color": MONTH_COLOURS[i % len(MONTH_COLOURS)]},
                y=list(FUNNEL_STAGES),
                x=[int(counts.get((month, stage), 0)) for stage in FUNNEL_STAGES],
                textinfo="value",
                hovertemplate=f"{month:%Y-%m}<br>%{{y}}: %{{x:,d}}<extra></extra>",
            )
        )
    _layout(fig, 340)
    fig.update_layout(funnelmode="stack", margin={"l": 64})
    return fig


def _funnel_totals(funnel: pl.DataFrame) -> list[tuple[str, str]]:
    totals = {r["stage"]: r["count"] for r in funnel.group_by("stage").agg(pl.col("count").sum()).iter_rows(named=True)}
    return [(stage, f"{int(totals.get(stage, 0)):,}") for stage in FUNNEL_STAGES]


def _figure_json(fig: go.Figure) -> str:
    """The figure as JSON that is safe inside a <script> element (no closing tag can appear in it)."""
    payload = fig.to_plotly_json()
    text = json.dumps({"data": payload["data"], "layout": payload["layout"]}, separators=(",", ":"), default=str)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _status_view(data: DashboardData) -> dict[str, Any]:
    status = data.status
    published = status.published_at.astimezone(dt.UTC) if status.published_at else None
    quarantine = sorted(status.quarantine.items())
    return {
        "publish_id": status.publish_id or "",
        "published_at": f"{published:%Y-%m-%d %H:%M} UTC" if published else "never",
        "as_of": _iso(status.as_of),
        "is_fresh": status.is_fresh,
        "freshness_target": status.freshness_target,
        "freshness_hours": load_registry().freshness_hour,
        "failed_checks": sorted(status.failed_checks),
        "warnings": sorted(status.warnings),
        "quarantine_total": f"{sum(rows for _, rows in quarantine):,}",
        "quarantine": [(name, f"{rows:,}") for name, rows in quarantine if rows],
        "restatements": data.restatement_count,
    }


# --- serving -----------------------------------------------------------------------------------------------------


class DashboardServer(ThreadingHTTPServer):
    """Serves one dashboard file, read afresh on each request (a rebuild shows without a restart)."""

    daemon_threads = True

    def __init__(self, path: Path, host: str, port: int) -> None:
        self.file = path
        super().__init__((host, port), _DashboardHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests, notebooks); the CLI calls ``serve_forever`` instead."""
        thread = threading.Thread(target=self.serve_forever, name="dashboard-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "dataops-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        if self.path.split("?", 1)[0] not in ("/", "/index.html"):
            self.send_error(HTTPStatus.NOT_FOUND, "only the dashboard is served here")
            return
        try:
            content = self.server.file.read_bytes()
        except FileNotFoundError:
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no dashboard built yet: run `dataops dashboard build`")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s " + format, self.address_string(), *args)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_dashboard(path: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> DashboardServer:
    """A server for the dashboard file, bound to loopback only (port 0: any free port); not yet serving.

    The dashboard is for people on this machine (or through an SSH tunnel); exposing it wider is a decision
    for a real web server with authentication, not for this one.
    """
    if not is_loopback(host):
        raise ValueError(f"the dashboard is served on loopback only, not on {host!r}")
    return DashboardServer(Path(path), host, port)

"""The KPI dashboard: one self-contained HTML file built from the general analyst warehouse.

The executive wants to look, not query. The dashboard is a static file so that it can be opened from disk,
mailed, archived next to a publish, or served read-only on loopback, and it needs no network at all:
plotly.js is inlined once, every figure is inlined as JSON, the style is inlined, and a Content Security
Policy in the page forbids the browser from fetching anything. It reads only the analyst warehouse (what
every analyst may see, personal data pseudonymised) and shows only aggregates of it.

It speaks to executives: each KPI under its business name and one-line meaning from the registry, flows as
month to date and last month against the period before (``dataops.egress.headlines``), stocks as the latest
value against last month's end, flash and final told apart, restatements shown; the status in plain words.
It reads on a phone as on a desk (``dataops.egress.figures``).

The same input gives the same bytes (sorted queries, no build timestamp), so a rebuild after a publish that
changed nothing changes nothing. Freshness is the one judgement that depends on the clock: the file states
it as checked at build time (``dataops.publish.status``) and the page re-checks it with the same rule when opened,
because a dashboard nobody rebuilt (publishing stopped) is exactly when it must not keep saying "up to date".
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import plotly
import polars as pl
from plotly.offline import get_plotlyjs

from dataops.core.digest import digest, files_digest
from dataops.core.settings import Settings
from dataops.core.site import LoopbackSite
from dataops.core.warehouse import Limits, connect, query_frame, scalar
from dataops.egress import figures
from dataops.egress.headlines import Reading, day_words, flow_readings, stock_readings
from dataops.egress.usage_view import SESSIONS_SCHEMA, SESSIONS_SQL, USAGE_SCHEMA, USAGE_SQL, usage_view
from dataops.publish.status import CheckSummary, Status, platform_status
from registry import ENTERPRISE_FILE
from registry.churn_risk import CHURN_RISK_FILE, load_churn_risk
from registry.loader import load_registry

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_PORT = 8765
# The page may run its own inline scripts and styles and show inline images (plotly's own icons); nothing else,
# in particular no request to any server: the browser enforces "works with no network" for us.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)
RESTATEMENT_ROWS_SHOWN = 25
DEFINITIONS_PAGE = "definitions.html"  # the definition changes' page beside it (egress/definitions_page.py)


def dashboard_path(settings: Settings) -> Path:
    """Where the dashboard is written by default (next to the data, never committed)."""
    return settings.data_dir / "dashboard" / "index.html"


CHURN_SCHEMA = {
    "customer_id": pl.String,
    "customer_name": pl.String,
    "churn_probability": pl.Float64,
    "risk_band": pl.String,
    "top_reasons": pl.String,
    "score_date": pl.Date,
}


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
    label: str = ""  # the business name; the technical name where the published registry predates labels

    @property
    def title(self) -> str:
        return self.label or self.name


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
    churn: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CHURN_SCHEMA))
    usage: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=USAGE_SCHEMA))
    sessions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SESSIONS_SCHEMA))


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
    settings: Settings, now: dt.datetime | None = None, checks: CheckSummary | None = None, limits: Limits | None = None
) -> tuple[Path, bool]:
    """The pipeline's dashboard, written only when what it would show changed (docs/decisions/0021); returns
    its path and whether it was written.

    A page is a function of the publish it reads and the status it shows (freshness at ``now``, failed
    checks, quarantine): the file keeps a digest of the status, which names the publish, and of the code
    that draws it, in a ``<meta>``. Only the status is read to compare; the KPIs only when the page changes.
    """
    target = dashboard_path(settings)
    status = platform_status(settings, now, checks, limits)
    if _made_from_of(target) == made_from(status):
        return target, False
    _write_page(target, render_dashboard(load_dashboard_data(settings, now, status, limits)))
    return target, True


def made_from(status: Status) -> str:
    """A digest of the status the page shows (its publish included) and of the code that draws it."""
    return digest({"status": asdict(status), "code": _code_digest(), "plotly": plotly.__version__})


@functools.cache
def _code_digest() -> str:
    """The drawing code, read once per process: comparing and then drawing a page both need it (and the
    registry, whose business names a publish made before them lacks)."""
    drawing = [Path(__file__), Path(figures.__file__), *(Path(__file__).with_name(f) for f in DRAWING_MODULES)]
    return files_digest([*drawing, *sorted(TEMPLATES.iterdir()), ENTERPRISE_FILE, CHURN_RISK_FILE])


DRAWING_MODULES = ("headlines.py", "usage_view.py")
MADE_FROM = re.compile(r'<meta name="dataops-made-from" content="([0-9a-f]{64})">')


def _made_from_of(page: Path) -> str | None:
    if not page.exists():
        return None
    with page.open(encoding="utf-8", errors="replace") as handle:
        found = MADE_FROM.search(handle.read(4096))  # in the head, before the inlined plotly.js
    return found.group(1) if found else None


# What the page reads: (datasets it needs, query, the empty frame's schema when one is missing).
READS: dict[str, tuple[tuple[str, ...], str, dict[str, Any]]] = {
    "daily": (
        ("kpis.kpi_daily",),
        """
        select date_day, kpi_name, cast(value as double) as value, unit, is_final, definition_version
        from kpis.kpi_daily order by kpi_name, date_day
        """,
        {"date_day": pl.Date, "kpi_name": pl.String, "value": pl.Float64, "unit": pl.String,
         "is_final": pl.Boolean, "definition_version": pl.String},
    ),
    "monthly": (
        ("kpis.kpi_monthly",),
        """
        select month_start_date, kpi_name, cast(value as double) as value, is_complete_month, is_final
        from kpis.kpi_monthly order by kpi_name, month_start_date
        """,
        {"month_start_date": pl.Date, "kpi_name": pl.String, "value": pl.Float64,
         "is_complete_month": pl.Boolean, "is_final": pl.Boolean},
    ),
    "restatements": (
        ("publish.kpi_restatements",),
        """
        select kpi_name, period, grain, cast(old_value as double) as old_value,
               cast(new_value as double) as new_value, was_final, restated_at, cause
        from publish.kpi_restatements order by restated_at desc, kpi_name, period, grain, cause
        """,
        {"kpi_name": pl.String, "period": pl.Date, "grain": pl.String, "old_value": pl.Float64,
         "new_value": pl.Float64, "was_final": pl.Boolean, "restated_at": pl.Datetime("us", "UTC"),
         "cause": pl.String},
    ),
    "states": (
        ("marts.fct_customer_states_daily",),
        """
        select date_day, state, count(*) as customers
        from marts.fct_customer_states_daily group by all order by date_day, state
        """,
        {"date_day": pl.Date, "state": pl.String, "customers": pl.Int64},
    ),
    # Each stage as the marts define it: leads as the CRM holds them, MQLs and SQLs as people (the mqls and sqls
    # KPIs count the same dim_people dates), won opportunities by close date (as opportunities_won).
    "funnel": (
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
    ),
}  # fmt: skip


# The churn scores of the latest scoring date (optional: nothing shows before a model has scored).
CHURN_SQL = """
select risk.customer_id, coalesce(customers.customer_name, risk.customer_id) as customer_name,
       risk.churn_probability, risk.risk_band, risk.top_reasons, risk.score_date
from marts.customer_churn_risk as risk
left join marts.dim_customers as customers on customers.customer_id = risk.customer_id
where risk.score_date = (select max(score_date) from marts.customer_churn_risk) and risk.risk_band is not null
order by risk.churn_probability desc, risk.customer_id
"""
AT_RISK_SHOWN = 20


def load_dashboard_data(
    settings: Settings, now: dt.datetime | None = None, status: Status | None = None, limits: Limits | None = None
) -> DashboardData:
    """Read the published KPIs, restatements, customer states and funnel (aggregates only)."""
    if not settings.analytics_db.exists():
        raise FileNotFoundError(f"no analyst warehouse at {settings.analytics_db}: nothing published yet")
    missing: list[str] = []
    frames: dict[str, pl.DataFrame] = {}
    with connect(settings.analytics_db, read_only=True, limits=limits) as conn:
        present = {
            f"{s}.{t}"
            for s, t in conn.execute("select table_schema, table_name from information_schema.tables").fetchall()
        }
        for name, (needs, sql, empty) in READS.items():
            absent = [dataset for dataset in needs if dataset not in present]
            missing.extend(absent)
            frames[name] = pl.DataFrame(schema=empty) if absent else query_frame(conn, sql)
        definitions = _definitions(conn, "reference.registry_kpis" in present)
        if {"marts.customer_churn_risk", "marts.dim_customers"} <= present:
            frames["churn"] = query_frame(conn, CHURN_SQL).cast(CHURN_SCHEMA)  # type: ignore[arg-type]
        # usage is optional too: a platform whose product sends nothing publishes none
        if "kpis.kpi_usage_daily" in present:
            frames["usage"] = query_frame(conn, USAGE_SQL).cast(USAGE_SCHEMA)  # type: ignore[arg-type]
        if "marts.fct_usage_sessions_daily" in present:
            frames["sessions"] = query_frame(conn, SESSIONS_SQL).cast(SESSIONS_SCHEMA)  # type: ignore[arg-type]
        restatement_count = (
            int(scalar(conn, "select count(*) from publish.kpi_restatements"))
            if "publish.kpi_restatements" in present
            else 0
        )
    return DashboardData(
        definitions=definitions,
        status=status or platform_status(settings, now, limits=limits),
        restatement_count=restatement_count,
        missing=sorted(set(missing)),
        **frames,
    )


def _definitions(conn: duckdb.DuckDBPyConnection, published: bool) -> list[KpiDefinition]:
    """The registry as published with the data (the definitions these values were computed under); the
    registry file for what the published copy lacks (a warehouse published before it, or before labels)."""

    registry = load_registry()
    labels = {k.name: k.label for k in registry.kpis}
    if not published:
        return [
            KpiDefinition(k.name, k.description, k.formula, k.unit, k.kind, k.owner, registry.version, k.label)
            for k in registry.kpis
        ]
    columns = {c for (c,) in conn.execute("select column_name from (describe reference.registry_kpis)").fetchall()}
    label = "label" if "label" in columns else "null"
    rows = conn.execute(f"""
        select kpi_name, description, formula, unit, kind, owner, definition_version, {label}
        from reference.registry_kpis order by kpi_order, kpi_name
    """).fetchall()
    return [
        KpiDefinition(str(n), str(d), str(f), str(u), str(k), str(o), str(v), str(lab or labels.get(n, "")))
        for n, d, f, u, k, o, v, lab in rows
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
    latest = data.daily["date_day"].max() if data.daily.height else None
    as_of = data.status.as_of or (latest if isinstance(latest, dt.date) else None)
    panels = [_panel(d, data, as_of) for d in definitions]
    funnel = _funnel_view(data.funnel)
    charts = [(p["chart_id"], p.pop("figure")) for p in panels if p.get("figure") is not None]
    charts.append(("chart-customer-states", figures.states_figure(data.states)))
    charts.append(("chart-lead-funnel", figures.funnel_figure(funnel["totals"], funnel["period"])))
    churn = _churn_view(data.churn)
    if churn:
        charts.append(("chart-churn-risk", figures.churn_figure(churn["bands"])))
    usage = usage_view(load_registry(), data.usage, data.sessions, as_of)
    if usage and usage["has_chart"]:
        charts.append(("chart-usage-active-users", usage.pop("figure")))
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template("dashboard.html.j2").render(
        made_from=made_from(data.status),
        csp=CONTENT_SECURITY_POLICY,
        plotlyjs=get_plotlyjs(),
        plotly_version=plotly.__version__,
        status=_status_view(data),
        panels=panels,
        figures=[(chart_id, figures.figure_json(fig)) for chart_id, fig in charts],
        as_of=_iso(data.status.as_of),
        as_of_words=day_words(data.status.as_of) if data.status.as_of else "",
        registry_version=", ".join(sorted({d.version for d in data.definitions if d.version})),
        missing=data.missing,
        funnel=funnel,
        churn=churn,
        usage=usage,
    )


def _churn_view(churn: pl.DataFrame) -> dict[str, Any] | None:
    """The risk distribution by band and the customers most at risk, or None before any score."""
    if churn.is_empty():
        return None
    bands = dict(churn.group_by("risk_band").len().iter_rows())
    order = load_churn_risk().band_names
    at_risk = churn.filter(pl.col("risk_band") == order[0]).head(AT_RISK_SHOWN)
    return {
        "score_date": _iso(churn["score_date"].max()),  # type: ignore[arg-type]
        "bands": [(band, int(bands.get(band, 0))) for band in order],
        "scored": churn.height,
        "high_band": order[0],
        "rows": [
            (r["customer_name"], f"{r['churn_probability']:.0%}", r["top_reasons"] or "")
            for r in at_risk.iter_rows(named=True)
        ],
        "more": max(0, int(bands.get(order[0], 0)) - AT_RISK_SHOWN),
    }


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
        return f"{value:,.0f}" if value >= 0 else f"−{-value:,.0f}"
    if unit == "USD":
        return f"${value:,.2f}" if value >= 0 else f"−${-value:,.2f}"
    return f"{value:,.2f} {unit}"


def change_words(reading: Reading, unit: str) -> str:
    """How a headline figure moved against the period before, in words: "▲ $1,200.00 (+12.0%) vs 1–4 Nov 2026"."""
    if reading.value is None:
        return ""
    if reading.against_value is None:
        return f"no comparison: the published data does not cover {reading.against}"
    change = reading.change or 0.0
    if change == 0:
        return f"no change vs {reading.against}"
    arrow = "▲" if change > 0 else "▼"
    percent = f" ({reading.change_pct:+.1f}%)" if reading.change_pct is not None else ""
    before = format_value(reading.against_value, unit)
    return f"{arrow} {format_value(abs(change), unit)}{percent} vs {reading.against} ({before})"


def _reading_view(reading: Reading, unit: str) -> dict[str, Any]:
    return {
        "period": reading.period,
        "value": format_value(reading.value, unit),
        "has_value": reading.value is not None,
        "is_final": reading.is_final,
        "change": change_words(reading, unit),
        "note": reading.note,
    }


def _panel(definition: KpiDefinition, data: DashboardData, as_of: dt.date | None) -> dict[str, Any]:
    name = definition.name
    daily = data.daily.filter(pl.col("kpi_name") == name).sort("date_day")
    monthly = data.monthly.filter(pl.col("kpi_name") == name).sort("month_start_date")
    restated = data.restatements.filter(pl.col("kpi_name") == name)
    unit = definition.unit or _first_unit(data.daily, name)
    flow = definition.kind == "flow"
    readings = (flow_readings if flow else stock_readings)(daily, as_of) if as_of and daily.height else []
    versions = sorted(set(daily["definition_version"].drop_nulls().to_list()))
    figure = None
    if daily.height:
        figure = figures.flow_figure(unit, monthly, restated) if flow else figures.stock_figure(unit, daily, restated)
    return {
        "name": name,
        "title": definition.title,
        "anchor": f"panel-{name}",
        "chart_id": f"chart-{name}",
        "definition": definition,
        "is_flow": flow,
        "chart_label": "monthly totals" if flow else "day by day",
        "readings": [_reading_view(r, unit) for r in readings],
        "value_versions": versions if versions and versions != [definition.version] else [],
        "monthly": _monthly_rows(monthly, unit, daily["date_day"].min() if daily.height else None),
        "restatements": _restatement_rows(restated, unit),
        "restatements_more": max(restated.height - RESTATEMENT_ROWS_SHOWN, 0),
        "restated": restated.height,
        "has_chart": figure is not None,
        "figure": figure,
    }


def _monthly_rows(monthly: pl.DataFrame, unit: str, first: Any) -> list[dict[str, Any]]:
    """Each month's value; the first month says where the published data starts, if not on the 1st."""

    def label(month: dt.date) -> str:
        partial = isinstance(first, dt.date) and month < first < figures.next_month(month)
        return figures.month_label(month) + (f" (from {first.day} {first:%b})" if partial else "")

    return [
        {
            "month": f"{r['month_start_date']:%Y-%m}",
            "label": label(r["month_start_date"]),
            "value": format_value(r["value"], unit),
            "is_final": r["is_final"],
            "is_complete": r["is_complete_month"],
        }
        for r in monthly.iter_rows(named=True)
    ]


def _restatement_rows(restated: pl.DataFrame, unit: str) -> list[dict[str, Any]]:
    return [
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


def _funnel_view(funnel: pl.DataFrame) -> dict[str, Any]:
    """The funnel's months and their totals: the chart draws the totals row of the table under it."""
    months = sorted(set(funnel["month"].to_list()))
    counts = {(r["month"], r["stage"]): int(r["count"]) for r in funnel.iter_rows(named=True)}
    totals = {stage: sum(counts.get((m, stage), 0) for m in months) for stage in figures.FUNNEL_STAGES}
    period = f"{months[0]:%b %Y} – {months[-1]:%b %Y}" if len(months) > 1 else (f"{months[0]:%b %Y}" if months else "")
    return {
        "stages": list(figures.FUNNEL_STAGES),
        "rows": [
            (figures.month_label(m), [f"{counts.get((m, stage), 0):,}" for stage in figures.FUNNEL_STAGES])
            for m in months
        ],
        "totals": totals,
        "total_cells": [f"{totals[stage]:,}" for stage in figures.FUNNEL_STAGES],
        "period": period,
    }


def _status_view(data: DashboardData) -> dict[str, Any]:
    """The status in plain words: no publish ids, no table names (those are in the page's footer)."""
    status = data.status
    published = status.published_at.astimezone(dt.UTC) if status.published_at else None
    quarantine = sorted(status.quarantine.items())
    held_back = sum(rows for _, rows in quarantine)
    failed, warnings = len(status.failed_checks), len(status.warnings)
    return {
        "publish_id": status.publish_id or "",
        "published_at": f"{published:%Y-%m-%d %H:%M} UTC" if published else "never",
        "updated": f"{day_words(published.date())}, {published:%H:%M} UTC" if published else "not yet",
        "as_of": _iso(status.as_of),
        "through": f"{status.as_of:%A} {status.as_of.day} {status.as_of:%B %Y}" if status.as_of else "–",
        "is_fresh": status.is_fresh,
        "freshness_hours": load_registry().freshness_hour,
        "checks_ok": not failed,
        "checks": "All quality checks passed in the latest update"
        if not failed
        else f"{failed} quality check{'' if failed == 1 else 's'} failed in the latest update: "
        "the figures shown are the last ones that passed",
        "warnings": "" if not warnings else f"{warnings} warning{'' if warnings == 1 else 's'} to look into",
        "held_back": f"{held_back:,}",
        "held_back_words": "No source records held back"
        if not held_back
        else f"{held_back:,} source record{'' if held_back == 1 else 's'} held back: they failed validation "
        "and are not counted until corrected",
        "restated": data.restatement_count,
        "restated_words": "No earlier figure revised"
        if not data.restatement_count
        else f"{data.restatement_count:,} earlier figure{'' if data.restatement_count == 1 else 's'} revised "
        "since first published",
        "failed_checks": sorted(status.failed_checks),
        "warning_checks": sorted(status.warnings),
        "quarantine": [(name, f"{rows:,}") for name, rows in quarantine if rows],
    }


# --- serving -----------------------------------------------------------------------------------------------------


def serve_dashboard(path: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> LoopbackSite:
    """A server for the dashboard file and its definitions page, bound to loopback only (port 0: any free
    port); not yet serving. The dashboard is for people on this machine (or through an SSH tunnel)."""
    path = Path(path)
    routes = {"/": path, "/index.html": path, f"/{DEFINITIONS_PAGE}": path.with_name(DEFINITIONS_PAGE)}
    return LoopbackSite(
        routes,
        host=host,
        port=port,
        what="dashboard",
        missing="no dashboard built yet: run `dataops dashboard build`",
        content_security_policy=CONTENT_SECURITY_POLICY,
    )

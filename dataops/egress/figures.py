"""The dashboard's charts (plotly figures), drawn to be read on a phone as well as on a desk.

No figure has a fixed width: plotly sizes each to its container. Axes grow their margins to fit their labels
(``automargin``), legends sit above the plot, and the page shows no plot toolbar, which covered them.
Flash values are orange and dashed or hatched, final values solid blue, restated values red diamonds.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go
import polars as pl

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
FINAL_COLOUR = "#2563eb"
PROVISIONAL_COLOUR = "#d97706"
RESTATED_COLOUR = "#dc2626"
HATCHED = {"shape": "/", "fgcolor": PROVISIONAL_COLOUR, "bgcolor": "#fff7e6", "solidity": 0.3}
FLASH_NOTE = "flash: month not closed"


def layout(fig: go.Figure, height: int) -> None:
    """One light look for every figure, without plotly's bulky default template in each of them."""
    fig.update_layout(
        template="none",
        autosize=True,
        height=height,
        margin={"l": 8, "r": 12, "t": 8, "b": 8},
        font={"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12, "color": "#1f2937"},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0},
    )
    fig.update_xaxes(automargin=True, showgrid=False, linecolor="#d1d5db", ticks="outside", tickcolor="#d1d5db")
    fig.update_yaxes(automargin=True, gridcolor="#eef0f3", zerolinecolor="#d1d5db", linecolor="#d1d5db")


def number_format(unit: str) -> str:
    return ",.0f" if unit == "count" else ",.2f"


def _value_axis(fig: go.Figure, unit: str, values: Iterable[float]) -> None:
    if unit == "count":  # whole things: no 500m ticks, and steps of one while the numbers are small
        small = max((abs(v) for v in values), default=0) <= 6
        fig.update_yaxes(tickformat=",~g", dtick=1 if small else None)
    else:
        fig.update_yaxes(tickformat="~s", tickprefix="$" if unit == "USD" else "")


def _dates(frame: pl.DataFrame, column: str = "date_day") -> list[str]:
    return [d.isoformat() for d in frame[column]]


def _values(frame: pl.DataFrame, column: str = "value") -> list[float]:
    return [float(v) for v in frame[column]]


def stock_figure(unit: str, daily: pl.DataFrame, restated: pl.DataFrame) -> go.Figure:
    """A level day by day: final solid, flash dashed and hollow in a shaded band, restated days as diamonds."""
    fig = go.Figure()
    number = number_format(unit)
    final = daily.filter(pl.col("is_final"))
    provisional = daily.filter(~pl.col("is_final"))
    fig.add_trace(
        go.Scatter(
            name="final",
            x=_dates(final),
            y=_values(final),
            mode="lines",
            line={"color": FINAL_COLOUR, "width": 2},
            hovertemplate=f"%{{x}}<br>%{{y:{number}}} (final)<extra></extra>",
        )
    )
    if final.height and provisional.height:  # joins the two lines; carries no value of its own
        joint = pl.concat([final.tail(1), provisional.head(1)])
        fig.add_trace(
            go.Scatter(
                name="final → flash",
                x=_dates(joint),
                y=_values(joint),
                mode="lines",
                line={"color": PROVISIONAL_COLOUR, "width": 1.5, "dash": "dot"},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    fig.add_trace(
        go.Scatter(
            name="flash",
            x=_dates(provisional),
            y=_values(provisional),
            mode="lines+markers",
            line={"color": PROVISIONAL_COLOUR, "width": 2, "dash": "dash"},
            marker={"symbol": "circle-open", "size": 6, "color": PROVISIONAL_COLOUR, "line": {"width": 1.5}},
            hovertemplate=f"%{{x}}<br>%{{y:{number}}} ({FLASH_NOTE})<extra></extra>",
        )
    )
    _flash_band(fig, provisional)
    _restated_days(fig, restated.filter(pl.col("grain") == "day").sort("period", "restated_at"), number)
    layout(fig, 260)
    _value_axis(fig, unit, _values(daily))
    return fig


def _flash_band(fig: go.Figure, provisional: pl.DataFrame) -> None:
    if not provisional.height:
        return
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
    )


def _restated_days(fig: go.Figure, restated: pl.DataFrame, number: str) -> None:
    if not restated.height:
        return
    fig.add_trace(
        go.Scatter(
            name="restated",
            x=_dates(restated, "period"),
            y=_values(restated, "new_value"),
            mode="markers",
            marker={"symbol": "diamond", "size": 11, "color": RESTATED_COLOUR, "line": {"color": "#fff", "width": 1}},
            customdata=[
                [
                    float(r["old_value"]),
                    float(r["new_value"]),
                    shorten(r["cause"]),
                    "final" if r["was_final"] else "flash",
                    f"{r['restated_at']:%Y-%m-%d %H:%M} UTC",
                ]
                for r in restated.iter_rows(named=True)
            ],
            hovertemplate=(
                f"restated %{{x}} (was %{{customdata[3]}})<br>old %{{customdata[0]:{number}}} → "
                f"new %{{customdata[1]:{number}}}<br>%{{customdata[2]}}<br>on %{{customdata[4]}}<extra></extra>"
            ),
        )
    )


def flow_figure(unit: str, monthly: pl.DataFrame, restated: pl.DataFrame) -> go.Figure:
    """Monthly totals: final solid, flash hatched (the month so far says "to date"), and a red diamond on a
    month holding a restated day, with the days, old and new values on hover."""
    fig = go.Figure()
    number = number_format(unit)
    for name, frame in (("final", monthly.filter(pl.col("is_final"))), ("flash", monthly.filter(~pl.col("is_final")))):
        flash = name == "flash"
        fig.add_trace(
            go.Bar(
                name=name,
                x=[month_label(d) for d in frame["month_start_date"]],
                y=_values(frame),
                marker={"color": "#fde6bf", "line": {"color": PROVISIONAL_COLOUR, "width": 1}, "pattern": HATCHED}
                if flash
                else {"color": FINAL_COLOUR},
                text=["to date" if not complete else "" for complete in frame["is_complete_month"]] if flash else None,
                textposition="inside",
                insidetextanchor="start",
                textfont={"color": "#7c2d12", "size": 11},
                hovertemplate=f"%{{x}}: %{{y:{number}}} ({FLASH_NOTE if flash else 'final'})<extra></extra>",
            )
        )
    _restated_months(fig, monthly, restated.filter(pl.col("grain") == "day").sort("period", "restated_at"), number)
    layout(fig, 260)
    fig.update_layout(barmode="overlay", bargap=0.25)
    months = [month_label(d) for d in monthly["month_start_date"]]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=months)
    _value_axis(fig, unit, _values(monthly))
    return fig


def month_label(day: dt.date) -> str:
    return f"{day:%b %Y}"


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _restated_months(fig: go.Figure, monthly: pl.DataFrame, restated: pl.DataFrame, number: str) -> None:
    if not restated.height:
        return
    totals = {month_label(d): float(v) for d, v in zip(monthly["month_start_date"], monthly["value"], strict=True)}
    by_month: dict[str, list[str]] = {}
    for r in restated.iter_rows(named=True):
        line = f"{r['period']}: {r['old_value']:{number}} → {r['new_value']:{number}} ({shorten(r['cause'], 80)})"
        by_month.setdefault(month_label(r["period"]), []).append(line)
    shown = [m for m in by_month if m in totals]
    fig.add_trace(
        go.Scatter(
            name="restated",
            x=shown,
            y=[totals[m] for m in shown],
            mode="markers",
            marker={"symbol": "diamond", "size": 11, "color": RESTATED_COLOUR, "line": {"color": "#fff", "width": 1}},
            customdata=["<br>".join(by_month[m]) for m in shown],
            hovertemplate="%{x}: restated days<br>%{customdata}<extra></extra>",
        )
    )


def shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def states_figure(states: pl.DataFrame) -> go.Figure:
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
    layout(fig, 300)
    fig.update_layout(hovermode="x unified", legend_traceorder="normal")
    return fig


def funnel_figure(totals: dict[str, int], period: str) -> go.Figure:
    """The stages over ``period``, each counted in the month it was reached: the totals of the table under it."""
    fig = go.Figure(
        go.Funnel(
            name=period,
            y=list(FUNNEL_STAGES),
            x=[totals.get(stage, 0) for stage in FUNNEL_STAGES],
            marker={"color": ["#1e40af", "#3b82f6", "#0f766e", "#14b8a6"]},
            texttemplate="%{x:,d}",  # as the table under it writes the same numbers
            textposition="auto",
            hovertemplate=f"{period}<br>%{{y}}: %{{x:,d}}<extra></extra>",
        )
    )
    layout(fig, 260)
    fig.update_layout(showlegend=False)
    return fig


def churn_figure(bands: list[tuple[str, int]]) -> go.Figure:
    """Customers scored on the latest date, by churn-risk band (highest first)."""
    colours = ["#b91c1c", "#d97706", "#0f766e"]
    fig = go.Figure(
        go.Bar(
            x=[count for _, count in bands],
            y=[band for band, _ in bands],
            orientation="h",
            marker={"color": [colours[min(i, len(colours) - 1)] for i in range(len(bands))]},
            texttemplate="%{x:,d}",
            textposition="auto",
            hovertemplate="%{y}: %{x:,d} customers<extra></extra>",
        )
    )
    layout(fig, 200)
    fig.update_layout(showlegend=False, yaxis={"autorange": "reversed"})
    return fig


ACTIVE_COLOURS = ("#1e40af", "#0f766e", "#7c3aed")


def active_users_figure(series: list[tuple[str, pl.DataFrame]]) -> go.Figure:
    """Usage levels day by day, one line each (``series``: name, frame of date_day, value, is_final): final
    solid, provisional dashed with hollow markers in the shaded band of days still open to late events."""
    fig = go.Figure()
    for (name, daily), colour in zip(series, ACTIVE_COLOURS, strict=False):
        daily = daily.sort("date_day")
        final = daily.filter(pl.col("is_final"))
        provisional = daily.filter(~pl.col("is_final"))
        # the provisional line starts at the last final day, so that each line is drawn unbroken
        open_part = pl.concat([final.tail(1), provisional]) if provisional.height else provisional
        fig.add_trace(
            go.Scatter(
                name=name,
                legendgroup=name,
                x=_dates(final),
                y=_values(final),
                mode="lines",
                line={"color": colour, "width": 2},
                hovertemplate=f"%{{x}}<br>{name}: %{{y:,.0f}} (final)<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                name=f"{name} (provisional)",
                legendgroup=name,
                showlegend=False,
                x=_dates(open_part),
                y=_values(open_part),
                mode="lines+markers",
                line={"color": colour, "width": 2, "dash": "dash"},
                marker={"symbol": "circle-open", "size": 6, "color": colour},
                hovertemplate=f"%{{x}}<br>{name}: %{{y:,.0f}} (provisional: late events may add to it)<extra></extra>",
            )
        )
    if series:
        _flash_band(fig, series[0][1].filter(~pl.col("is_final")))
    layout(fig, 280)
    _value_axis(fig, "count", [v for _, daily in series for v in _values(daily)])
    return fig


def figure_json(fig: go.Figure) -> str:
    """The figure as JSON that is safe inside a <script> element (no closing tag can appear in it)."""
    payload: dict[str, Any] = fig.to_plotly_json()
    text = json.dumps({"data": payload["data"], "layout": payload["layout"]}, separators=(",", ":"), default=str)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")

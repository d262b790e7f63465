"""The dashboard's usage section as an executive meets it: the registry's business names and meanings, each
figure on the latest day with provisional or final said, the last final value beside a provisional one, the
sessions, feature adoption and the active-users chart; read in headless Chromium at desktop and phone size
(no sideways scroll, every label inside its chart). No section before any usage is published."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.settings import PROJECT_ROOT, Settings
from dataops.egress.dashboard import load_dashboard_data, render_dashboard
from dataops.publish.status import Status
from registry.loader import load_registry
from tests.egress.test_dashboard import READ_LAYOUT, SIZES, only_the_file

REGISTRY = load_registry()
FIRST = dt.date(2025, 3, 3)
DAYS = 10
AS_OF = FIRST + dt.timedelta(days=DAYS - 1)
HORIZON = REGISTRY.usage.late_arrival_days
OUTPUT = PROJECT_ROOT / "test-output"

READ_USAGE = """() => {
  const text = (node, sel) => { const el = node.querySelector(sel);
    return el ? el.textContent.replace(/\\s+/g, " ").trim() : null; };
  const chart = document.getElementById("chart-usage-active-users");
  return {
    rendered: document.body.dataset.rendered,
    tiles: Array.from(document.querySelectorAll("#usage-figures .usage-tile")).map((t) => ({
      kpi: t.dataset.kpi, name: text(t, ".name"), meaning: text(t, ".meaning"), value: text(t, ".value"),
      badge: text(t, ".badge"), day: text(t, ".day"), settled: text(t, ".settled") })),
    features: Array.from(document.querySelectorAll("table.usage-features tbody tr")).map((r) =>
      Array.from(r.querySelectorAll("td")).map((td) => td.textContent.replace(/\\s+/g, " ").trim())),
    chart: chart ? { drawn: chart.querySelectorAll(".main-svg g.trace").length,
      traces: (chart.data || []).map((t) => ({ name: t.name, x: Array.from(t.x), y: Array.from(t.y),
                                               dash: t.line.dash || null })) } : null,
  };
}"""


def value_of(kpi: str, day: int) -> float:
    """A distinct, recognisable value per KPI and day (the section must show exactly these)."""
    index = REGISTRY.usage_kpi_names.index(kpi)
    return 100.0 * (index + 1) + day + (0.25 if kpi == "usage_per_seat" else 0.0)


def analyst_file(settings: Settings, usage: bool) -> None:
    """A published warehouse with the usage KPIs (the last HORIZON days provisional) and the sessions mart."""
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.analytics_db)) as conn:
        conn.execute("create schema kpis")
        conn.execute("create schema marts")
        conn.execute(
            "create table kpis.kpi_usage_daily "
            "(date_day date, kpi_name varchar, value decimal(38, 2), is_final boolean)"
        )
        conn.execute(
            "create table marts.fct_usage_sessions_daily (date_day date, sessions bigint, session_users bigint, "
            "usage_events bigint, avg_session_seconds decimal(18, 2), median_session_seconds decimal(18, 2))"
        )
        if not usage:
            return
        rows = [
            (FIRST + dt.timedelta(days=d), kpi, value_of(kpi, d), d + HORIZON <= DAYS - 1)
            for kpi in REGISTRY.usage_kpi_names
            for d in range(DAYS)
        ]
        conn.executemany("insert into kpis.kpi_usage_daily values (?, ?, ?, ?)", rows)
        sessions = [
            (FIRST + dt.timedelta(days=d), 1000 + d, 90 + d, 9000, 600 + 6 * d, 300 + 3 * d) for d in range(DAYS)
        ]
        conn.executemany("insert into marts.fct_usage_sessions_daily values (?, ?, ?, ?, ?, ?)", sessions)


def day_words(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def test_the_usage_section_in_business_words_provisional_and_final_told_apart(tmp_path: Path, browser: Any) -> None:
    settings = Settings(tmp_path)
    analyst_file(settings, usage=True)
    page_file = tmp_path / "index.html"
    page_file.write_text(render_dashboard(load_dashboard_data(settings, status=Status(as_of=AS_OF))))
    seen: dict[str, Any] = {}
    for size, (width, height) in SIZES.items():
        context = browser.new_context(viewport={"width": width, "height": height}, offline=True)
        requests: list[str] = []
        context.route("**/*", only_the_file(requests))
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
        page.goto(page_file.as_uri())
        page.wait_for_function("document.body.dataset.rendered !== undefined", timeout=60_000)
        page.wait_for_timeout(300)  # plotly's responsive resize
        seen = page.evaluate(READ_USAGE)
        layout = page.evaluate(READ_LAYOUT)
        OUTPUT.mkdir(exist_ok=True)
        page.locator("#usage-figures").scroll_into_view_if_needed()
        page.screenshot(path=str(OUTPUT / f"dashboard-usage-{size}.png"))
        context.close()
        assert errors == [] and seen["rendered"] == "true", (size, errors)
        assert layout["scrollWidth"] <= layout["clientWidth"], (size, layout)  # no sideways scroll
        usage_chart = next(c for c in layout["charts"] if c["id"] == "chart-usage-active-users")
        assert usage_chart["labels"] and usage_chart["cut"] == 0 and usage_chart["covered"] == 0, (size, usage_chart)
        assert usage_chart["width"] <= width

    last_final = AS_OF - dt.timedelta(days=HORIZON)
    headline = [k for k in REGISTRY.usage_kpis if not k.name.startswith("feature_adoption_")]
    tiles = seen["tiles"]
    assert [(t["kpi"], t["name"], t["meaning"]) for t in tiles[: len(headline)]] == [
        (k.name, k.label, k.description) for k in headline
    ]  # the registry's business names and meanings, in its order
    for kpi, tile in zip(headline, tiles, strict=False):
        latest, settled = value_of(kpi.name, DAYS - 1), value_of(kpi.name, DAYS - 1 - HORIZON)
        shown = (lambda v: f"{v:,.0f}") if kpi.unit == "count" else (lambda v: f"{v:,.2f}")
        assert tile["value"] == shown(latest) and tile["badge"] == "provisional" and tile["day"] == day_words(AS_OF)
        assert tile["settled"] == f"last final: {shown(settled)} on {day_words(last_final)}", tile
    sessions = tiles[len(headline) :]
    assert [t["kpi"] for t in sessions] == ["sessions", "median_session_seconds", "avg_session_seconds"]
    assert sessions[0]["value"] == f"{1000 + DAYS - 1:,}" and sessions[0]["badge"] == "provisional"
    assert sessions[1]["value"] == f"{(300 + 3 * (DAYS - 1)) / 60:.1f} min"
    assert (
        sessions[2]["settled"]
        == f"last final: {(600 + 6 * (DAYS - 1 - HORIZON)) / 60:.1f} min on {day_words(last_final)}"
    )
    assert "30 minutes" in sessions[0]["meaning"]

    features = [k for k in REGISTRY.usage_kpis if k.name.startswith("feature_adoption_")]
    assert seen["features"] == [
        [
            k.name.removeprefix("feature_adoption_").capitalize(),
            f"{value_of(k.name, DAYS - 1):.1f}%",
            f"{day_words(AS_OF)} provisional",
        ]
        for k in features
    ]
    chart = seen["chart"]
    assert chart["drawn"] == len(chart["traces"]) == 6
    dates = [(FIRST + dt.timedelta(days=d)).isoformat() for d in range(DAYS)]
    for kpi in ("daily_active_users", "weekly_active_users", "monthly_active_users"):
        label = next(k.label for k in REGISTRY.usage_kpis if k.name == kpi)
        final, provisional = (t for t in chart["traces"] if t["name"].startswith(label))
        assert final["dash"] is None and provisional["dash"] == "dash"
        assert final["x"] == dates[: DAYS - HORIZON] and provisional["x"] == dates[DAYS - HORIZON - 1 :]
        assert final["y"] + provisional["y"][1:] == [value_of(kpi, d) for d in range(DAYS)]


def test_no_usage_section_before_any_usage_is_published(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    analyst_file(settings, usage=False)
    page = render_dashboard(load_dashboard_data(settings, status=Status(as_of=AS_OF)))
    assert "usage-figures" not in page and "chart-usage-active-users" not in page

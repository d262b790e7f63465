"""The KPI dashboard as an executive meets it: built from a small published warehouse (with one restated
value), opened from disk in headless Chromium with networking disabled, at desktop and phone size, and checked
after its scripts ran: every number against the published data and the simulator's truth, and the layout."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import shutil
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from dataops.core.settings import PROJECT_ROOT, Settings
from dataops.egress.dashboard import (
    build_dashboard,
    dashboard_path,
    refresh_dashboard,
    serve_dashboard,
)
from tests.published import LateRun, Published

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("published")]
OUTPUT = PROJECT_ROOT / "test-output"
STATES = ("prospect", "onboarding", "active", "paused", "churned")
NOW = dt.datetime(2025, 2, 12, 7, 0, tzinfo=dt.UTC)  # when the build judges freshness: after the 06:00 target

# Everything the checks need from the page once plotly drew it, read in the page itself.
READ_PAGE = """() => {
  const trace = (t) => ({
    name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []), customdata: t.customdata || null,
    dash: t.line ? t.line.dash || null : null,
    pattern: t.marker && t.marker.pattern ? t.marker.pattern.shape || null : null,
    text: t.texttemplate || null, hovertemplate: t.hovertemplate || "" });
  const chart = (id) => {
    const el = document.getElementById(id);
    return el ? { drawn: el.querySelectorAll(".main-svg g.trace").length, classes: el.className,
                  legend: Array.from(el.querySelectorAll(".legendtext")).map((n) => n.textContent),
                  shown: Array.from(el.querySelectorAll("text.funnel-text, g.funnel text")).map((n) => n.textContent),
                  traces: (el.data || []).map(trace) } : null;
  };
  const text = (node, sel) => {
    const el = node.querySelector(sel);
    return el ? el.textContent.replace(/\\s+/g, " ").trim() : null;
  };
  const readings = (node) => Array.from(node.querySelectorAll(".reading")).map((r) => ({
    period: text(r, ".period"), value: text(r, ".value"), badge: text(r, ".badge"), change: text(r, ".change"),
    note: text(r, ".rnote") }));
  return {
    rendered: document.body.dataset.rendered,
    panels: Array.from(document.querySelectorAll("section.panel.kpi")).map((p) => ({
      kpi: p.dataset.kpi, title: text(p, "h3"), meaning: text(p, "header .meaning"),
      chart: chart("chart-" + p.dataset.kpi),
      readings: readings(p.querySelector(".readings")), version: text(p, ".definition-version"),
      monthly: Array.from(p.querySelectorAll("table.monthly tbody tr")).map((r) => ({
        month: r.dataset.month, value: text(r, "td.num"), badge: text(r, ".badge") })),
      restatements: Array.from(p.querySelectorAll("tr.restatement")).map((r) => ({
        period: r.dataset.period, old: text(r, ".old"), new: text(r, ".new"), cause: text(r, ".cause") })),
    })),
    tiles: Array.from(document.querySelectorAll(".tiles .tile")).map((t) => ({
      kpi: t.dataset.kpi, name: text(t, ".name"), readings: readings(t),
      revised: !!t.querySelector(".badge.restated") })),
    states: chart("chart-customer-states"),
    funnel: chart("chart-lead-funnel"),
    funnelTotals: Object.fromEntries(Array.from(document.querySelectorAll("table.funnel tr.total td[data-stage]"))
      .map((td) => [td.dataset.stage, td.textContent.trim()])),
    funnelRows: Array.from(document.querySelectorAll("table.funnel tbody tr:not(.total)")).map((r) =>
      Array.from(r.querySelectorAll("td")).map((td) => td.textContent.trim())),
    strip: document.getElementById("status").textContent.replace(/\\s+/g, " ").trim(),
    updated: text(document, "#status-publish .value"),
    heldBack: text(document, "#quarantine-total"),
    revised: text(document, "#restated-total"),
    freshness: { checked: document.getElementById("freshness").dataset.checked,
                 badge: text(document, "#freshness-badge") },
  };
}"""
# How the page sits in the window: no sideways scroll, every axis label and legend inside its chart, legends
# clear of the axis labels, no plot toolbar.
READ_LAYOUT = """() => {
  const doc = document.documentElement;
  const overlaps = (a, b) => a.left < b.right && a.right > b.left && a.top < b.bottom && a.bottom > b.top;
  const charts = Array.from(document.querySelectorAll(".js-plotly-plot")).map((el) => {
    const box = el.getBoundingClientRect();
    const labels = Array.from(el.querySelectorAll(".xtick text, .ytick text")).map((t) => t.getBoundingClientRect())
      .filter((r) => r.width > 0);
    const legend = Array.from(el.querySelectorAll(".legend .traces")).map((t) => t.getBoundingClientRect());
    const inside = (r) => r.left >= box.left - 1 && r.right <= box.right + 1
      && r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
    return { id: el.id, width: Math.round(box.width), labels: labels.length,
             cut: labels.concat(legend).filter((r) => !inside(r)).length,
             covered: legend.filter((l) => labels.some((r) => overlaps(l, r))).length,
             toolbar: el.querySelectorAll(".modebar").length };
  });
  return { scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, charts };
}"""
SIZES = {"desktop": (1440, 1000), "phone": (390, 844)}
TABLE_NAME = re.compile(r"\b(marts|kpis|publish|reference|catalog|crm|erp|accounting)\.[a-z_]+")


@pytest.fixture(scope="module")
def restated(late_run: LateRun) -> Published:
    """The published warehouse one day on: a late journal line for the closed January restates revenue
    (read-only: the run the publishing tests check, tests/conftest.py ``late_run``)."""
    return late_run.case


def analyst(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def shown(value: float | Decimal, unit: str) -> str:
    """A number as the page must write it (written out here, not taken from the code under test)."""
    number = float(value)
    sign = "−" if number < 0 else ""
    return f"{sign}{abs(number):,.0f}" if unit == "count" else f"{sign}${abs(number):,.2f}"


def previous_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def expected_readings(
    values: dict[dt.date, Decimal], kind: str, as_of: dt.date
) -> list[tuple[Decimal | None, Decimal | None]]:
    """The headline figures from the simulator's truth: (value, the period before's value or None)."""
    first = min(values)
    this_month = as_of.replace(day=1)
    last_month, before = previous_month(as_of), previous_month(previous_month(as_of))

    def total(start: dt.date, end: dt.date) -> Decimal:
        return sum((v for d, v in values.items() if start <= d <= end), Decimal(0))

    if kind == "stock":
        last_end, before_end = this_month - dt.timedelta(days=1), last_month - dt.timedelta(days=1)
        return [(values[as_of], values.get(last_end)), (values.get(last_end), values.get(before_end))]
    same_days_end = min(last_month + (as_of - this_month), this_month - dt.timedelta(days=1))
    return [
        (total(this_month, as_of), total(last_month, same_days_end) if first <= last_month else None),
        (total(last_month, this_month - dt.timedelta(days=1)), total(before, last_month) if first <= before else None),
    ]


def check_reading(
    seen: dict[str, Any], expected: tuple[Decimal | None, Decimal | None], unit: str, final: bool
) -> None:
    value, against = expected
    assert value is not None and seen["value"] == shown(value, unit), (seen, expected)
    assert seen["badge"] == ("final" if final else "flash"), seen
    if against is None:
        assert seen["change"].startswith("no comparison"), seen
    elif value == against:
        assert seen["change"].startswith("no change"), seen
    else:
        arrow = "▲" if value > against else "▼"
        assert seen["change"].startswith(f"{arrow} {shown(abs(value - against), unit)}"), (seen, expected)
        assert seen["change"].endswith(f"({shown(against, unit)})"), (seen, expected)


def test_the_dashboard_shows_the_published_figures_in_business_words(
    restated: Published, browser: Any, tmp_path: Path
) -> None:
    """Every number on the page against the published data and the simulator's truth: headline figures, charts,
    monthly tables, the restatement, the funnel, customers by state and the status strip."""
    settings = restated.settings
    page_file = build_dashboard(settings, tmp_path / "index.html", now=NOW)
    html = page_file.read_text()
    assert build_dashboard(settings, tmp_path / "again.html", now=NOW).read_bytes() == page_file.read_bytes()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)  # nothing to fetch: all inline
    assert html.count("<script>") == 2 and 'http-equiv="Content-Security-Policy"' in html
    people = analyst(settings, "select email from marts.dim_people where email is not null order by email limit 200")
    assert people and not any(email in html for (email,) in people)  # aggregates only, no person in the page

    registry = analyst(
        settings, "select kpi_name, label, description, unit, kind from reference.registry_kpis order by kpi_order"
    )
    truth: dict[str, dict[dt.date, Decimal]] = {}
    for day, kpi, value in pl.read_parquet(settings.truth_dir / "kpi_daily.parquet").iter_rows():
        truth.setdefault(kpi, {})[day] = value
    daily: dict[str, dict[tuple[str, bool], float]] = {}
    for kpi, day, value, final in analyst(settings, "select kpi_name, date_day, value, is_final from kpis.kpi_daily"):
        daily.setdefault(kpi, {})[(day.isoformat(), final)] = float(value)
        assert truth[kpi][day] == value, (kpi, day)  # what is published is the truth
    monthly: dict[str, dict[str, tuple[float, bool]]] = {}
    sql = "select kpi_name, strftime(month_start_date, '%Y-%m'), value, is_final from kpis.kpi_monthly"
    for kpi, month, value, final in analyst(settings, sql):
        monthly.setdefault(kpi, {})[month] = (float(value), final)
    [(as_of,)] = analyst(settings, "select max(date_day) from kpis.kpi_daily")
    assert as_of == restated.late_day and as_of.month == 2  # February is open, January closed on the 7th

    seen, layouts = open_page(browser, page_file)
    assert seen["rendered"] == "true"
    assert [(p["kpi"], p["title"], p["meaning"]) for p in seen["panels"]] == [r[:3] for r in registry]
    assert [t["name"] for t in seen["tiles"]] == [r[1] for r in registry]  # business names, registry order
    for (kpi, _, _, unit, kind), panel, tile in zip(registry, seen["panels"], seen["tiles"], strict=True):
        expected = expected_readings(truth[kpi], kind, as_of)
        assert panel["readings"] == tile["readings"], kpi
        assert len(panel["readings"]) == 2, kpi
        check_reading(panel["readings"][0], expected[0], unit, final=False)  # February: flash
        check_reading(panel["readings"][1], expected[1], unit, final=True)  # January: closed, final
        if kind == "flow":
            assert panel["readings"][0]["period"] == f"month to date, 1–{as_of.day} Feb 2025"
            assert panel["readings"][1]["period"] == "January 2025"
            assert panel["readings"][1]["note"] == "from 20 Jan 2025, when the published data starts"
        else:
            assert panel["readings"][0]["period"] == f"{as_of.day} Feb 2025"
            assert panel["readings"][1]["period"] == "end of January 2025"
        check_chart(panel, kind, daily[kpi], monthly[kpi])
        months = {m["month"]: (m["value"], m["badge"]) for m in panel["monthly"]}
        assert months == {m: (shown(v, unit), None if final else "to date") for m, (v, final) in monthly[kpi].items()}
        assert "v1" in panel["version"]

    [(kpi_restated, period, old, new, cause)] = analyst(
        settings, "select kpi_name, period, old_value, new_value, cause from publish.kpi_restatements"
    )
    check_restatement(seen, kpi_restated, period, old, new, cause, monthly[kpi_restated])
    check_status(seen, settings)
    check_customers_and_funnel(seen, settings)
    for size, layout in layouts.items():
        assert layout["scrollWidth"] <= layout["clientWidth"], (size, layout)  # no sideways scroll
        assert len(layout["charts"]) == len(registry) + 2
        for chart in layout["charts"]:
            assert chart["labels"] and chart["cut"] == 0 and chart["covered"] == 0, (size, chart)
            assert chart["toolbar"] == 0 and chart["width"] <= SIZES[size][0], (size, chart)


def only_the_file(requests: list[str]) -> Any:
    """A route handler that lets the page load itself and nothing else, noting every request."""

    def handle(route: Any) -> None:
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    return handle


def open_page(browser: Any, page_file: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The page at desktop and phone size, offline, asking for nothing but itself; screenshots of both."""
    layouts: dict[str, dict[str, Any]] = {}
    seen: dict[str, Any] = {}
    OUTPUT.mkdir(exist_ok=True)
    for size, (width, height) in SIZES.items():
        context = browser.new_context(viewport={"width": width, "height": height}, offline=True)
        requests: list[str] = []
        problems: list[str] = []
        context.route("**/*", only_the_file(requests))
        page = context.new_page()
        page.on("console", lambda m, problems=problems: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error, problems=problems: problems.append(str(error)))
        page.goto(page_file.as_uri())
        page.wait_for_function("document.body.dataset.rendered !== undefined", timeout=60_000)
        page.wait_for_timeout(300)  # plotly's responsive resize
        seen = page.evaluate(READ_PAGE)
        layouts[size] = page.evaluate(READ_LAYOUT)
        page.screenshot(path=str(OUTPUT / f"dashboard-{size}.png"))
        page.screenshot(path=str(OUTPUT / f"dashboard-{size}-full.png"), full_page=True)
        context.close()
        assert problems == [] and requests == [page_file.as_uri()], (size, problems, requests)
    return seen, layouts


def check_chart(
    panel: dict[str, Any], kind: str, daily: dict[tuple[str, bool], float], monthly: dict[str, tuple[float, bool]]
) -> None:
    """Stocks day by day, flows as monthly totals: every published value drawn, as final or flash."""
    chart = panel["chart"]
    assert chart["drawn"] == len(chart["traces"]) and "js-plotly-plot" in chart["classes"], panel["kpi"]

    def points(name: str) -> list[tuple[Any, float]]:
        (trace,) = [t for t in chart["traces"] if t["name"] == name]
        return list(zip(trace["x"], trace["y"]))

    final, flash = (next(t for t in chart["traces"] if t["name"] == n) for n in ("final", "flash"))
    assert "flash" in chart["legend"] and "flash" in flash["hovertemplate"]
    if kind == "stock":
        drawn = {(x, True): y for x, y in points("final")} | {(x, False): y for x, y in points("flash")}
        assert drawn == daily, panel["kpi"]
        assert flash["dash"] == "dash" and final["dash"] is None
    else:
        label = {m: dt.date.fromisoformat(f"{m}-01").strftime("%b %Y") for m in monthly}
        drawn_months = {(x, True): y for x, y in points("final")} | {(x, False): y for x, y in points("flash")}
        assert drawn_months == {(label[m], final): v for m, (v, final) in monthly.items()}, panel["kpi"]
        assert flash["pattern"] == "/" and final["pattern"] is None


def check_restatement(
    seen: dict[str, Any],
    kpi: str,
    period: dt.date,
    old: Decimal,
    new: Decimal,
    cause: str,
    monthly: dict[str, tuple[float, bool]],
) -> None:
    panel = next(p for p in seen["panels"] if p["kpi"] == kpi)
    marker = next(t for t in panel["chart"]["traces"] if t["name"] == "restated")
    month = f"{period:%Y-%m}"
    assert marker["x"] == [f"{period:%b %Y}"] and marker["y"] == [monthly[month][0]]  # on the month's bar
    assert marker["customdata"][0].startswith(f"{period}: {float(old):,.2f} → {float(new):,.2f}")
    assert panel["restatements"] == [
        {"period": period.isoformat(), "old": shown(old, "USD"), "new": shown(new, "USD"), "cause": cause}
    ]
    assert "journal line" in cause
    for other in seen["panels"]:
        assert other["kpi"] == kpi or not any(t["name"] == "restated" for t in other["chart"]["traces"])
    assert [t["kpi"] for t in seen["tiles"] if t["revised"]] == [kpi]


def check_status(seen: dict[str, Any], settings: Settings) -> None:
    """The status strip in plain words: when, how fresh, checks, records held back, revisions; no publish id and no
    table name in it."""
    [(publish_id, published_at)] = analyst(
        settings, "select publish_id, published_at from publish.publish_log order by published_at desc limit 1"
    )
    [(quarantined,)] = analyst(settings, "select sum(rows) from publish.quarantine_summary")
    [(revisions,)] = analyst(settings, "select count(*) from publish.kpi_restatements")
    at = published_at.astimezone(dt.UTC)
    assert seen["updated"] == f"{at.day} {at:%b %Y}, {at:%H:%M} UTC"
    assert seen["heldBack"] == f"{quarantined:,}" and quarantined > 0
    assert seen["revised"] == str(revisions) == "1"
    assert seen["freshness"] == {"checked": "view", "badge": "out of date"}  # re-judged with the viewer's clock
    assert publish_id not in seen["strip"] and not TABLE_NAME.search(seen["strip"]), seen["strip"]
    assert "All quality checks passed" in seen["strip"] and "held back" in seen["strip"]


def check_customers_and_funnel(seen: dict[str, Any], settings: Settings) -> None:
    states, funnel = seen["states"], seen["funnel"]
    customers = dict(
        analyst(settings, "select date_day::varchar, count(*) from marts.fct_customer_states_daily group by 1")
    )
    assert states["drawn"] == len(states["traces"]) and {t["name"] for t in states["traces"]} <= set(STATES)
    stacked = [sum(day) for day in zip(*(t["y"] for t in states["traces"]))]
    assert stacked == [customers[day] for day in states["traces"][0]["x"]]  # every customer, every day, one state

    by_month = analyst(
        settings,
        """
        select strftime(month, '%b %Y'), count(*) filter (where stage = 'leads'),
               count(*) filter (where stage = 'mqls'), count(*) filter (where stage = 'sqls'),
               count(*) filter (where stage = 'won')
        from (select date_trunc('month', created_date) as month, 'leads' as stage from marts.fct_leads
              union all select date_trunc('month', mql_date), 'mqls' from marts.dim_people where mql_date is not null
              union all select date_trunc('month', sql_date), 'sqls' from marts.dim_people where sql_date is not null
              union all select date_trunc('month', closed_date), 'won' from marts.fct_opportunities where is_won)
        group by month order by month
        """,
    )
    assert seen["funnelRows"] == [[month, *(f"{n:,}" for n in counts)] for month, *counts in by_month]
    totals = [sum(row[i] for row in by_month) for i in range(1, 5)]
    sums = dict(analyst(settings, "select kpi_name, sum(value) from kpis.kpi_daily group by 1"))
    assert totals[1:] == [sums["mqls"], sums["sqls"], sums["opportunities_won"]]  # the KPIs' own definitions
    (trace,) = funnel["traces"]
    assert trace["y"] == ["leads", "MQLs", "SQLs", "won"] and trace["x"] == totals  # the chart draws the totals
    assert seen["funnelTotals"] == {s: f"{n:,}" for s, n in zip(trace["y"], totals, strict=True)}
    assert trace["text"] == "%{x:,d}"  # its labels written as the table writes them


def test_the_dashboard_is_served_on_loopback_only(tmp_path: Path) -> None:
    page = tmp_path / "dashboard" / "index.html"
    with pytest.raises(ValueError, match="loopback"):
        serve_dashboard(page, host="0.0.0.0", port=0)
    server = serve_dashboard(page, port=0)
    server.start()
    try:
        host, port = server.server_address[:2]

        def get(path: str) -> tuple[int, bytes, str | None]:
            conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                return response.status, response.read(), response.getheader("Content-Security-Policy")
            finally:
                conn.close()

        assert get("/")[0] == 503  # nothing built yet
        page.parent.mkdir()
        page.write_text("<!DOCTYPE html><p>v1</p>")
        status, body, policy = get("/")
        assert (status, body) == (200, b"<!DOCTYPE html><p>v1</p>") and policy and "default-src 'none'" in policy
        page.write_text("<!DOCTYPE html><p>v2</p>")
        assert get("/index.html")[1] == b"<!DOCTYPE html><p>v2</p>"  # a rebuild shows without a restart
        assert get("/../warehouse/analytics.duckdb")[0] == 404  # the dashboard, and nothing else, is served
        assert server.url == f"http://127.0.0.1:{port}/"
    finally:
        server.stop()


def test_nothing_published_means_no_dashboard(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    assert dashboard_path(settings) == tmp_path / "dashboard" / "index.html"
    with pytest.raises(FileNotFoundError, match="nothing published"):
        build_dashboard(settings)


def test_the_pipeline_rewrites_the_dashboard_only_when_what_it_shows_changed(
    restated: Published, tmp_path: Path
) -> None:
    """The same publish and status leave the file as it is; a new publish, or freshness judged later, write
    it again (and the page written is the one the dashboard command builds). The page reads the analysts'
    file and nothing else of the data directory (dataops/egress/dashboard.py, dataops/publish/status.py): a
    copy of that file is the data directory here, not a copy of the whole one (71 MB)."""
    settings = Settings(tmp_path / "data")
    settings.warehouse_dir.mkdir(parents=True)
    shutil.copy2(restated.settings.analytics_db, settings.analytics_db)
    page = dashboard_path(settings)

    assert refresh_dashboard(settings, NOW) == (page, True)
    written = page.stat()
    assert refresh_dashboard(settings, NOW) == (page, False)
    assert page.stat().st_mtime_ns == written.st_mtime_ns and page.stat().st_ino == written.st_ino
    assert page.read_bytes() == build_dashboard(settings, tmp_path / "built.html", now=NOW).read_bytes()

    assert refresh_dashboard(settings, NOW + dt.timedelta(days=3)) == (page, True)  # no longer fresh
    assert refresh_dashboard(settings, NOW + dt.timedelta(days=3)) == (page, False)

    os.chmod(settings.analytics_db, stat.S_IRUSR | stat.S_IWUSR)  # stand in for a new publish
    with duckdb.connect(str(settings.analytics_db)) as conn:
        conn.execute("insert into publish.publish_log (publish_id, published_at) values ('stand-in', now())")
    assert refresh_dashboard(settings, NOW + dt.timedelta(days=3)) == (page, True)

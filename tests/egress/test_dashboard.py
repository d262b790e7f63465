"""The KPI dashboard as an executive meets it: built from a small published warehouse (with one restated
value), opened from disk in headless Chromium with networking disabled, and checked after its scripts ran."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataops.core.settings import PROJECT_ROOT, Settings
from dataops.egress.dashboard import (
    build_dashboard,
    dashboard_path,
    format_value,
    refresh_dashboard,
    serve_dashboard,
)
from source_systems.simulator.run import simulate
from tests.local import CHROMIUM, CHROMIUM_ARGS
from tests.pipeline import run_job
from tests.published import Published, copy_of

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("published")]
OUTPUT = PROJECT_ROOT / "test-output"
STATES = ("prospect", "onboarding", "active", "paused", "churned")
NOW = dt.datetime(2025, 2, 12, 7, 0, tzinfo=dt.UTC)  # when the build judges freshness: after the 06:00 target

# Everything the checks need from the page once plotly drew it, read in the page itself.
READ_PAGE = """() => {
  const trace = (t) => ({
    name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []), customdata: t.customdata || null,
    dash: t.line ? t.line.dash || null : null, symbol: t.marker ? t.marker.symbol || null : null,
    pattern: t.marker && t.marker.pattern ? t.marker.pattern.shape || null : null,
    hovertemplate: t.hovertemplate || "" });
  const chart = (id) => {
    const el = document.getElementById(id);
    return el ? { drawn: el.querySelectorAll(".main-svg g.trace").length, classes: el.className,
                  legend: Array.from(el.querySelectorAll(".legendtext")).map((n) => n.textContent),
                  traces: (el.data || []).map(trace) } : null;
  };
  const text = (sel) => { const el = document.querySelector(sel); return el ? el.textContent.trim() : null; };
  return {
    rendered: document.body.dataset.rendered,
    panels: Array.from(document.querySelectorAll("section.panel.kpi")).map((p) => ({
      kpi: p.dataset.kpi, chart: chart("chart-" + p.dataset.kpi),
      latest: text("#" + p.id + " .latest .badge"), latestDate: p.querySelector(".latest").dataset.date,
      version: text("#" + p.id + " .definition-version"), owner: p.querySelector(".definition").textContent,
      restatements: Array.from(p.querySelectorAll("tr.restatement")).map((r) => ({
        period: r.dataset.period, old: r.querySelector(".old").textContent, new: r.querySelector(".new").textContent,
        cause: r.querySelector(".cause").textContent })),
    })),
    tiles: Array.from(document.querySelectorAll(".tiles .tile")).map((t) => t.textContent.replace(/\\s+/g, " ").trim()),
    states: chart("chart-customer-states"),
    funnel: chart("chart-lead-funnel"),
    published: text("#status-publish .value"),
    quarantine: text("#quarantine-total"),
    freshness: { checked: document.getElementById("freshness").dataset.checked, badge: text("#freshness-badge") },
  };
}"""


@pytest.fixture(scope="module")
def restated(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """The published warehouse one day on: a late journal line for the closed January restates revenue."""
    case = copy_of(published, tmp_path_factory.mktemp("dashboard"))
    simulate(case.settings.sources_dir, case.late_day)
    assert run_job(case.root, case.late_day, case.late_day).success
    return case


def analyst(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_dashboard_renders_offline_with_published_values_flash_and_restatement(
    restated: Published, browser: Any, tmp_path: Path
) -> None:
    settings = restated.settings
    page_file = build_dashboard(settings, tmp_path / "index.html", now=NOW)
    html = page_file.read_text()
    assert build_dashboard(settings, tmp_path / "again.html", now=NOW).read_bytes() == page_file.read_bytes()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)  # nothing to fetch: all inline
    assert html.count("<script>") == 2 and 'http-equiv="Content-Security-Policy"' in html
    people = analyst(settings, "select email from marts.dim_people where email is not null order by email limit 200")
    assert people and not any(email in html for (email,) in people)  # aggregates only, no person in the page

    kpis = [name for (name,) in analyst(settings, "select kpi_name from reference.registry_kpis order by kpi_order")]
    daily: dict[str, dict[tuple[str, bool], float]] = {}
    for kpi, day, value, final in analyst(settings, "select kpi_name, date_day, value, is_final from kpis.kpi_daily"):
        daily.setdefault(kpi, {})[(day.isoformat(), final)] = float(value)
    monthly: dict[str, dict[tuple[str, bool], float]] = {}
    sql = "select kpi_name, strftime(month_start_date, '%Y-%m'), value, is_final from kpis.kpi_monthly"
    for kpi, month, value, final in analyst(settings, sql):
        monthly.setdefault(kpi, {})[(month, final)] = float(value)
    [(kpi_restated, period, old, new, cause)] = analyst(
        settings, "select kpi_name, period, old_value, new_value, cause from publish.kpi_restatements"
    )
    [(published_at,)] = analyst(settings, "select max(published_at) from publish.publish_log")
    [(quarantined,)] = analyst(settings, "select sum(rows) from publish.quarantine_summary")

    context = browser.new_context(viewport={"width": 1440, "height": 1000}, offline=True)
    requests: list[str] = []
    problems: list[str] = []

    def only_the_file(route: Any) -> None:
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_the_file)
    page = context.new_page()
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(page_file.as_uri())
    page.wait_for_function("document.body.dataset.rendered !== undefined", timeout=60_000)
    seen = page.evaluate(READ_PAGE)

    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "dashboard.png"))
    page.locator(f"#panel-{kpi_restated}").screenshot(path=str(OUTPUT / "dashboard-restatement.png"))
    page.screenshot(path=str(OUTPUT / "dashboard-full.png"), full_page=True)
    context.close()

    assert seen["rendered"] == "true" and problems == []
    assert requests == [page_file.as_uri()]  # the page asked for nothing but itself
    assert [p["kpi"] for p in seen["panels"]] == kpis  # one panel per KPI, in registry order

    def points(chart: dict[str, Any], name: str, final: bool) -> dict[tuple[str, bool], float]:
        traces = [t for t in chart["traces"] if t["name"] == name]
        assert len(traces) == 1, (name, [t["name"] for t in chart["traces"]])
        return {(x, final): y for x, y in zip(traces[0]["x"], traces[0]["y"])}

    for panel in seen["panels"]:
        kpi, chart = panel["kpi"], panel["chart"]
        assert chart["drawn"] == len(chart["traces"]) and "js-plotly-plot" in chart["classes"], kpi  # plotly drew it
        shown = points(chart, "final", True) | points(chart, "provisional", False)
        assert shown == daily[kpi], kpi  # every published daily value, each drawn as final or provisional
        months = points(chart, "monthly final", True) | points(chart, "monthly provisional", False)
        assert months == monthly[kpi], kpi
        assert "1.0.0" in panel["version"]
        # February is not closed: its flash values are drawn apart (dashed and hollow, or hatched) and labelled
        provisional = next(t for t in chart["traces"] if t["name"] == "provisional")
        assert provisional["x"] and (provisional["dash"] == "dash" or provisional["pattern"] == "/"), kpi
        final = next(t for t in chart["traces"] if t["name"] == "final")
        assert final["dash"] is None and final["pattern"] is None, kpi
        assert "provisional" in chart["legend"] and "provisional" in provisional["hovertemplate"]
        assert panel["latestDate"] == restated.late_day.isoformat() and panel["latest"] == "provisional"

    panel = next(p for p in seen["panels"] if p["kpi"] == kpi_restated)
    marker = next(t for t in panel["chart"]["traces"] if t["name"] == "restated")
    assert marker["x"] == [period.isoformat()] and marker["y"] == [float(new)]
    assert marker["customdata"][0][:3] == [float(old), float(new), cause]  # old, new and cause on hover
    assert "old" in marker["hovertemplate"] and "new" in marker["hovertemplate"]
    assert panel["restatements"] == [
        {"period": period.isoformat(), "old": format_value(float(old), "USD"), "new": format_value(float(new), "USD"),
         "cause": cause}
    ]  # fmt: skip
    assert "journal line" in cause
    for other in seen["panels"]:
        assert other["kpi"] == kpi_restated or not any(t["name"] == "restated" for t in other["chart"]["traces"])
    assert any(t.startswith(kpi_restated) and "restated" in t for t in seen["tiles"])

    assert seen["published"] == f"{published_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    assert seen["quarantine"] == f"{quarantined:,}"
    assert seen["freshness"] == {"checked": "view", "badge": "stale"}  # re-judged with the viewer's clock

    states, funnel = seen["states"], seen["funnel"]
    customers = dict(
        analyst(settings, "select date_day::varchar, count(*) from marts.fct_customer_states_daily group by 1")
    )
    assert states["drawn"] == len(states["traces"]) and {t["name"] for t in states["traces"]} <= set(STATES)
    stacked = [sum(day) for day in zip(*(t["y"] for t in states["traces"]))]
    assert stacked == [customers[day] for day in states["traces"][0]["x"]]  # every customer, every day, one state
    assert funnel["drawn"] == len(funnel["traces"]) and funnel["traces"][0]["y"] == ["leads", "MQLs", "SQLs", "won"]
    stages = [sum(stage) for stage in zip(*(t["x"] for t in funnel["traces"]))]
    sums = dict(analyst(settings, "select kpi_name, sum(value) from kpis.kpi_daily group by 1"))
    assert stages[1:] == [sums["mqls"], sums["sqls"], sums["opportunities_won"]]  # the KPIs' own definitions
    assert (OUTPUT / "dashboard.png").stat().st_size > 50_000


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
    it again (and the page written is the one the dashboard command builds)."""
    settings = copy_of(restated, tmp_path / "data").settings
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

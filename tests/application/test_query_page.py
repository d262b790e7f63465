"""The query page as an analyst meets it, in Chromium against the real `dataops api serve`: sign in with a token,
browse the catalog, write SQL with names completed, page through results, download CSV and Parquet, and see
which brake stopped a query and whom to ask. Every request the page makes goes through the gateway's
/v1/query, so the audit log holds each of them."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from dataops.core.settings import PROJECT_ROOT
from dataops.governance import audit
from dataops.governance.policy import POLICY_PATH
from tests.governance.conftest import Governed, governed  # noqa: F401 (the published warehouse and its users)
from tests.local import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("built")]

DATAOPS = Path(sys.executable).with_name("dataops")
OUTPUT = PROJECT_ROOT / "test-output"
LIMITS = {"max_scan_rows": 5_000, "max_result_rows": 200}  # the analyst's brakes on this server
MRR = "select date_day, value from kpis.kpi_daily where kpi_name = 'mrr_usd' order by date_day"


@dataclass
class Server:
    url: str
    governed: Governed

    def analyst(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.governed.settings.analytics_db), read_only=True) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def server(governed: Governed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """`dataops api serve` on a loopback port, with small analyst brakes so that one can be seen to hold."""
    policy = yaml.safe_load(POLICY_PATH.read_text())
    policy["limits"]["analyst"] = LIMITS
    policy_file = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    port = free_port()
    env = {**os.environ, "DATAOPS_DATA_DIR": str(governed.settings.data_dir), "DATAOPS_POLICY": str(policy_file)}
    process = subprocess.Popen(
        [str(DATAOPS), "api", "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"`dataops api serve` did not start: {process.communicate()[1][-2000:]!r}")
        time.sleep(0.2)
    try:
        yield Server(url, governed)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def page(server: Server, tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium tab on the page; it may reach this server and nothing else."""
    from playwright.sync_api import sync_playwright

    elsewhere: list[str] = []
    problems: list[str] = []

    def only_the_server(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
        context.route("**/*", only_the_server)
        tab = context.new_page()
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda error: problems.append(str(error)))
        tab.goto(f"{server.url}/")
        tab.wait_for_function("document.body.dataset.ready === 'true'")
        yield tab
        browser.close()
    assert elsewhere == []  # everything the page needs is served by the gateway itself
    assert [p for p in problems if "401" not in p and "403" not in p] == []


def sign_in(page: Any, token: str) -> None:
    page.fill("#token", token)
    page.click("#sign-in-button")


def run(page: Any, sql: str) -> None:
    page.fill("#sql", sql)
    with page.expect_response(lambda response: response.url.endswith("/v1/query")):
        page.click("#run")
    page.wait_for_selector("#results:not([hidden]), #denied:not([hidden])")


def texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_text_contents()]


def test_an_analyst_signs_in_browses_the_catalog_completes_names_and_pages_through_results(
    page: Any, server: Server
) -> None:
    users = server.governed
    sign_in(page, "not-a-token")
    page.wait_for_selector("#sign-in-error:not([hidden])")
    assert page.text_content("#sign-in-error") == "Sign-in refused: unknown token"
    assert page.is_hidden("#app")

    sign_in(page, users.tokens["analyst"])
    page.wait_for_selector("#app:not([hidden])")
    catalog = dict(server.analyst("select dataset, classification from catalog.datasets"))
    listed = page.eval_on_selector_all("button.dataset", "(nodes) => nodes.map((n) => n.dataset.dataset)")
    assert sorted(listed) == sorted(catalog) and "marts.fct_gl_entries" in listed  # restricted ones are listed too

    page.click("button.dataset[data-dataset='kpis.kpi_daily']")
    card = page.locator("#dataset")
    [(owner, roles, notes)] = server.analyst(
        "select owner, access_roles, notes from catalog.datasets where dataset = 'kpis.kpi_daily'"
    )
    facts = dict(zip(texts(page, "#dataset dl.facts dt"), texts(page, "#dataset dl.facts dd"), strict=True))
    assert facts["owner"] == owner and facts["notes"] == notes
    assert facts["who may read"] == ", ".join(yaml.safe_load(roles))
    columns = [c for (c,) in server.analyst("select column_name from catalog.columns where dataset = 'kpis.kpi_daily'")]
    assert texts(page, "#dataset table.columns td.name") == columns
    assert texts(page, "#dataset ul.examples code") == [MRR]  # the finance domain's example query
    card.locator("ul.examples button").click()
    assert page.input_value("#sql") == MRR

    page.fill("#sql", "")
    page.click("#sql")
    page.keyboard.type("select date_day, value from kpis.kpi_d")
    assert texts(page, "#suggestions li") == ["kpis.kpi_daily"]  # the catalog's names complete
    page.keyboard.press("Tab")
    page.keyboard.type(" where kpi_n")
    assert "kpi_name" in texts(page, "#suggestions li")  # and the columns of the datasets in the query
    page.keyboard.press("Tab")
    page.keyboard.type(" = 'mrr_usd' order by date_day")
    assert page.input_value("#sql") == MRR

    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#results:not([hidden])")
    expected = [(day.isoformat(), float(value)) for day, value in server.analyst(MRR)]
    assert len(expected) > 100
    assert page.text_content("#result-count") == f"{len(expected)} rows"
    seen = []
    while True:
        rows = page.eval_on_selector_all(
            "#result-table tr:not(:first-child)", "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))"
        )
        assert len(rows) <= 50
        seen += [(day, float(value)) for day, value in rows]
        if page.is_disabled("#next"):
            break
        page.click("#next")
    assert seen == expected  # every row, a page of 50 at a time
    assert page.text_content("#page").startswith(f"page {-(-len(expected) // 50)} of {-(-len(expected) // 50)}")
    OUTPUT.mkdir(exist_ok=True)
    page.click("#prev")
    page.screenshot(path=str(OUTPUT / "query-page-desktop.png"))

    run(page, "select * from kpis.kpi_daily")  # more rows than the analyst's row limit
    assert page.text_content("#result-count") == f"{LIMITS['max_result_rows']} rows (cut at your role's row limit)"
    assert any("row limit" in note for note in texts(page, "#notes li"))

    records = [r for r in audit.read(users.settings) if r.get("user") == "analyst_user"]
    statements = [r["statement"] for r in records if r["door"] == "http"]
    assert MRR in statements and any("from catalog.datasets" in s for s in statements)  # the page, audited


def test_a_denied_query_says_which_brake_stopped_it_and_whom_to_ask(page: Any, server: Server) -> None:
    sign_in(page, server.governed.tokens["analyst"])
    page.wait_for_selector("#app:not([hidden])")

    run(page, "select * from marts.fct_gl_entries")
    assert page.get_attribute("#denied", "data-brake") == ""
    assert page.text_content("#denied h2") == "Not allowed"
    assert "marts.fct_gl_entries is restricted" in page.text_content("#denied .message")
    [(owner, roles)] = server.analyst(
        "select owner, access_roles from catalog.datasets where dataset = 'marts.fct_gl_entries'"
    )
    readers = ", ".join(yaml.safe_load(roles))
    assert texts(page, "#denied ul.ask li") == [f"{owner} owns marts.fct_gl_entries (readable by {readers})"]
    page.screenshot(path=str(OUTPUT / "query-page-denied.png"))

    [(states,)] = server.analyst("select count(*) from marts.fct_customer_states_daily")
    assert states > LIMITS["max_scan_rows"]
    run(page, "select * from marts.fct_customer_states_daily")
    assert page.get_attribute("#denied", "data-brake") == "scan_limit"
    assert page.text_content("#denied h2") == "Stopped by the scan limit"
    message = page.text_content("#denied .message")
    assert f"{LIMITS['max_scan_rows']:,}" in message and "data-platform@dataops.example" in message
    assert page.is_hidden("#results")

    denied = [r for r in audit.read(server.governed.settings) if r.get("allowed") is False and r["door"] == "http"]
    assert {"select * from marts.fct_gl_entries", "select * from marts.fct_customer_states_daily"} <= {
        r["statement"] for r in denied
    }
    assert any(r.get("brake") == "scan_limit" for r in denied)


def test_results_download_as_csv_and_parquet(page: Any, server: Server) -> None:
    sign_in(page, server.governed.tokens["analyst"])
    page.wait_for_selector("#app:not([hidden])")
    page.fill("#sql", MRR)
    expected = [(day.isoformat(), f"{value}") for day, value in server.analyst(MRR)]

    with page.expect_download() as csv_download:
        page.click("#download-csv")
    assert csv_download.value.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(csv_download.value.path()).read_text())))
    assert rows[0] == ["date_day", "value"] and [(d, f"{float(v):.2f}") for d, v in rows[1:]] == expected

    page.fill("#sql", MRR.replace("value from", "value, value * 12 as value from"))  # two columns named value
    with page.expect_download() as parquet_download:
        page.click("#download-parquet")
    assert parquet_download.value.suggested_filename.endswith(".parquet")
    table = pq.read_table(parquet_download.value.path())
    assert table.column_names == ["date_day", "value", "value_2"]  # named as the JSON result names them
    downloaded = zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
    assert [(d.isoformat(), f"{v}", f"{y}") for d, v, y in downloaded] == [
        (d, v, f"{12 * Decimal(v)}") for d, v in expected
    ]


def test_the_page_reads_on_a_phone(page: Any, server: Server) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, server.governed.tokens["analyst"])
    page.wait_for_selector("#app:not([hidden])")
    page.click("button.dataset[data-dataset='kpis.kpi_daily']")
    run(page, MRR)
    page.locator("#sql").scroll_into_view_if_needed()
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1] == 390  # no sideways scroll (a wide result scrolls inside its own box)
    page.screenshot(path=str(OUTPUT / "query-page-phone.png"))


def test_only_the_pages_own_files_are_served_with_a_strict_policy(server: Server) -> None:
    home = httpx.get(f"{server.url}/", follow_redirects=False, timeout=10)
    assert home.status_code == 307 and home.headers["location"] == "/query/"
    for name in ("", "app.js", "app.css", "index.html"):
        response = httpx.get(f"{server.url}/query/{name}", timeout=10)
        assert response.status_code == 200, name
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    for name in ("../api.py", "__init__.py", "static", "%2e%2e%2fapi.py"):
        assert httpx.get(f"{server.url}/query/{name}", timeout=10).status_code == 404, name
    assert b"http" not in httpx.get(f"{server.url}/query/index.html", timeout=10).content.replace(b"http-equiv", b"")

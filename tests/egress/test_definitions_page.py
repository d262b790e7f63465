"""The dashboard's page of definition changes shows a proposal's impact before it is adopted, offline."""

from __future__ import annotations

import datetime as dt
import urllib.request
from decimal import Decimal
from pathlib import Path

import polars as pl

from dataops.core.settings import Settings
from dataops.egress.dashboard import dashboard_path, serve_dashboard
from dataops.egress.definitions_page import build_definitions_page
from dataops.governance.definition_versions import (
    IMPACT_SCHEMAS,
    append_history,
    proposal_dir,
    record_change,
)
from registry.versions import change_from_data

CHANGE = {
    "version": 2,
    "author": "finance council",
    "reason": "delinquent after 5 days",
    "approved": "2025-02-01",
    "effective": "2025-01-01",
    "restates_history": True,
    "set": {"delinquency.days_past_due": 5},
}


def a_proposal(settings: Settings) -> None:
    """A proposal as `propose` leaves it: the change, the event, the two report files."""
    record_change(settings, change_from_data(CHANGE, "t"))
    append_history(
        settings,
        {
            "event": "proposed",
            "version": "v2",
            "from_version": "v1",
            "at": "2025-02-02",
            "by": "finance council",
            "reason": CHANGE["reason"],
        },
    )
    folder = proposal_dir(settings, 2)
    folder.mkdir(parents=True)
    day, month = dt.date(2025, 1, 31), dt.date(2025, 1, 1)
    rows = [
        ("v2", "delinquent_customers", "day", day, Decimal(1), Decimal(3), Decimal(2), "v1", "v2"),
        ("v2", "delinquent_customers", "month", month, Decimal(1), Decimal(3), Decimal(2), "v1", "v2"),
        ("v2", "mrr_usd", "day", day, Decimal(500), Decimal(500), Decimal(0), "v1", "v2"),
    ]
    pl.DataFrame(rows, schema=IMPACT_SCHEMAS["impact_kpis"], orient="row").write_parquet(folder / "impact_kpis.parquet")
    customers = [("v2", "C-7", "becomes delinquent", "active", "active", False, True, day, day, 1)]
    pl.DataFrame(customers, schema=IMPACT_SCHEMAS["impact_customers"], orient="row").write_parquet(
        folder / "impact_customers.parquet"
    )


def test_the_page_shows_what_a_proposal_moves_and_each_definitions_history(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    empty = build_definitions_page(settings).read_text()
    assert "No definition change has been proposed yet" in empty
    a_proposal(settings)
    page = build_definitions_page(settings).read_text()
    assert 'id="adopted">v1<' in page and 'id="proposal-v2"' in page
    assert 'data-kpi="delinquent_customers"' in page and "moves on 1 days" in page and "January 2025" in page
    assert 'data-kpi="mrr_usd"' not in page  # only what moves
    assert "C-7" in page and "becomes delinquent: 1" in page
    assert "delinquency.days_past_due" in page and "delinquent after 5 days" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, nothing to run


def test_the_dashboard_server_serves_the_page_beside_the_dashboard(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    a_proposal(settings)
    build_definitions_page(settings)
    server = serve_dashboard(dashboard_path(settings), port=0)
    server.start()
    try:
        with urllib.request.urlopen(f"{server.url}definitions.html", timeout=30) as response:
            assert response.status == 200 and b'id="proposal-v2"' in response.read()
    finally:
        server.stop()

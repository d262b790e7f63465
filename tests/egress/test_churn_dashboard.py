"""The dashboard shows the churn-risk distribution and the at-risk list once scores are published."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from dataops.core.settings import Settings
from dataops.egress.dashboard import load_dashboard_data, render_dashboard
from dataops.publish.status import Status

DAY = dt.date(2025, 6, 1)


def analyst_file(settings: Settings, scores: bool) -> None:
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.analytics_db)) as conn:
        conn.execute("create schema marts")
        conn.execute("create table marts.dim_customers (customer_id varchar, customer_name varchar)")
        conn.execute("insert into marts.dim_customers values ('C1', 'Acme'), ('C2', 'Beta'), ('C3', 'Gamma')")
        if scores:
            conn.execute("""
                create table marts.customer_churn_risk (customer_id varchar, score_date date,
                    churn_probability double, risk_band varchar, top_reasons varchar, model_version varchar)
            """)
            conn.execute(
                "insert into marts.customer_churn_risk values "
                "('C1', ?, 0.81, 'high', 'delinquent; late_invoices_180d', 'v1'), "
                "('C2', ?, 0.30, 'medium', 'pauses_365d', 'v1'), ('C3', ?, 0.02, 'low', '', 'v1'), "
                "('C3', ?, 0.90, 'high', 'an older date', 'v1')",
                [DAY, DAY, DAY, DAY - dt.timedelta(days=1)],
            )


def test_the_at_risk_list_and_the_bands_of_the_latest_scores(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    analyst_file(settings, scores=True)
    page = render_dashboard(load_dashboard_data(settings, status=Status(as_of=DAY)))
    assert 'id="panel-at-risk"' in page and 'id="chart-churn-risk"' in page
    at_risk = page.split('id="panel-at-risk"')[1].split("</section>")[0]
    assert "Acme" in at_risk and "81%" in at_risk and "delinquent; late_invoices_180d" in at_risk
    assert "Beta" not in at_risk and "Gamma" not in at_risk  # medium and low; C3's high was an older date
    assert "3 live or paused customers scored on 2025-06-01" in page


def test_no_churn_section_before_any_score(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    analyst_file(settings, scores=False)
    page = render_dashboard(load_dashboard_data(settings, status=Status(as_of=DAY)))
    assert "panel-at-risk" not in page and "chart-churn-risk" not in page

"""The gateway's rules: opt-out access, restricted data by grant, personal data pseudonymised, and brakes."""

from __future__ import annotations

import json
import time

import duckdb
import pytest

from dataops.governance import audit
from dataops.governance.gateway import Denied
from tests.governance.conftest import BRAKE_SECONDS, Governed

pytestmark = pytest.mark.xdist_group("built")


def catalog(governed: Governed) -> list[tuple[str, str]]:
    with duckdb.connect(str(governed.settings.analytics_db), read_only=True) as conn:
        return conn.execute("select dataset, classification from catalog.datasets order by 1").fetchall()


def test_an_analyst_reads_every_public_and_internal_dataset(governed: Governed) -> None:
    analyst = governed.user("analyst")
    open_datasets = [d for d, c in catalog(governed) if c in {"public", "internal", "confidential"}]
    assert {"kpis.kpi_daily", "marts.dim_customers", "marts.fct_contracts"} <= set(open_datasets)
    for dataset in open_datasets:
        result = governed.gateway().run(analyst, f"select count(*) as n from {dataset}", door="cli")
        assert result.rows[0][0] >= 0, dataset


def test_personal_data_is_pseudonymised_for_an_analyst_but_still_joins(governed: Governed) -> None:
    analyst = governed.user("analyst")
    emails = governed.gateway().run(analyst, "select email from marts.dim_people limit 50", door="cli")
    assert all(e.startswith("psd_") and "@" not in e for (e,) in emails.rows)
    assert any("pseudonymised" in note for note in emails.notes)
    joined = governed.gateway().run(
        analyst, "select count(*) from marts.fct_leads l join marts.dim_people p on p.email = l.email", door="cli"
    )
    assert joined.rows[0][0] > 0  # the keyed hash is the same in every table
    marketing = governed.gateway().run(
        governed.user("marketing_ops"), "select email from marts.dim_people limit 5", door="cli"
    )
    assert all("@" in e for (e,) in marketing.rows)  # granted: in clear


def test_restricted_data_is_denied_clearly_and_granted_to_finance(governed: Governed) -> None:
    with pytest.raises(Denied) as denied:
        governed.gateway().run(governed.user("analyst"), "select * from marts.fct_gl_entries", door="cli")
    message = denied.value.reason
    assert "marts.fct_gl_entries is restricted" in message and "finance, executive, data_engineer" in message
    assert "data-platform" in message  # how to ask
    finance = governed.gateway().run(governed.user("finance"), "select count(*) from marts.fct_gl_entries", door="cli")
    assert finance.rows[0][0] > 0


def test_a_query_over_the_scan_limit_is_refused_before_it_runs(braked: Governed) -> None:
    started = time.monotonic()
    with pytest.raises(Denied) as denied:
        braked.gateway().run(braked.user("analyst"), "select * from marts.fct_customer_states_daily", door="cli")
    assert denied.value.brake == "scan_limit"
    assert "scan limit" in denied.value.reason and "12,000 rows" in denied.value.reason
    assert "above the 2,000 allowed, the limit of role analyst" in denied.value.reason
    assert time.monotonic() - started < 5
    record = audit.read(braked.settings)[-1]
    assert record["allowed"] is False and record["brake"] == "scan_limit" and record["rows"] == 0


def test_a_runaway_cross_join_is_interrupted_at_the_timeout(braked: Governed) -> None:
    sql = (
        "select count(*) from marts.dim_products a, marts.dim_products b, marts.fct_fx_rates c, "
        "marts.fct_fx_rates d, marts.fct_fx_rates e, marts.fct_fx_rates f"
    )
    started = time.monotonic()
    with pytest.raises(Denied) as denied:
        braked.gateway().run(braked.user("analyst"), sql, door="cli")
    elapsed = time.monotonic() - started
    assert denied.value.brake == "statement_timeout" and f"stopped after {BRAKE_SECONDS}s" in denied.value.reason
    assert elapsed < 10


def test_a_large_result_is_cut_at_the_row_limit_and_says_so(braked: Governed) -> None:
    result = braked.gateway().run(
        braked.user("analyst"), "select kpi_name, month_start_date from kpis.kpi_monthly", door="cli"
    )
    assert len(result.rows) == 10 and result.truncated
    assert any("cut at 10 rows" in note for note in result.notes)
    assert audit.read(braked.settings)[-1]["truncated"] is True


def test_every_query_is_audited_with_who_what_and_why(governed: Governed) -> None:
    before = len(audit.read(governed.settings))
    governed.gateway().run(
        governed.user("sales_ops"), "select customer_id from marts.dim_customers limit 3", door="cli"
    )
    with pytest.raises(Denied):
        governed.gateway().run(governed.user("sales_ops"), "select * from marts.fct_gl_entries", door="cli")
    allowed, denied = audit.read(governed.settings)[before:]
    for record in (allowed, denied):
        assert {
            "at",
            "user",
            "role",
            "door",
            "statement",
            "datasets",
            "columns",
            "rows",
            "duration_ms",
            "allowed",
            "reason",
        } <= set(record)
    assert allowed["allowed"] is True and allowed["rows"] == 3 and allowed["datasets"] == ["marts.dim_customers"]
    assert allowed["columns"] == ["marts.dim_customers.customer_id"]
    assert denied["allowed"] is False and "restricted" in denied["reason"] and denied["user"] == "sales_ops_user"
    json.dumps(allowed)

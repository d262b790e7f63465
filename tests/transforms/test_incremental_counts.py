"""The customer counts per day are incremental on DuckDB, and kpi_daily follows the counts (docs/decisions/0089): a
build recounts the customers' days from the first one the states mart recomputed, and kpi_daily recomputes from
the first day a count it holds differs from the customer or funnel counts (a table rebuilt whole). A daily build
in which a lost opportunity is won on the day it closed leaves the old days as they are and brings the won
opportunity to kpi_daily; after a customer's contract ended on an old day and a lead re-qualified (its address
corrected to a free mail one: its person's MQL day goes), and after a definition period adopted from an old day,
the counts and kpi_daily equal a full refresh of the three.

Each step builds, on a copy of the ``built`` warehouse, the models between the changed raw records and the KPIs
(tests/transforms/test_incremental_staging.py builds the same way)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from tests.conftest import BUILT_START
from tests.transforms.test_incremental_money import equal_a_full_refresh
from tests.transforms.test_incremental_staging import (
    LAST,
    REBUILT,
    build,
    copy_of,
    end_a_contract,
    newer_version,
    scalar,
)

pytestmark = pytest.mark.xdist_group("built")

KPIS = ("intermediate.int_kpis_customers_counted", "intermediate.int_kpis_funnel_counted", "kpis.kpi_daily")
MODELS = [
    "run",
    "--select",
    *REBUILT,
    "stg_crm__leads",
    "stg_crm__lead_changes",
    "int_leads_qualified",
    "int_people_qualified",
    "fct_customer_states_daily",
    "stg_crm__opportunity_stage_changes",
    "fct_opportunities",
    *(kpi.split(".")[1] for kpi in KPIS),
]
# one marked row per model, of an old day: (table, the column marked, its key, the day's offset from the old day);
# kpi_daily's is a money KPI of an earlier day (it recomputes from a day whose counts differ from those it holds,
# as the customer counts' marked day does)
MARKS = {
    "intermediate.int_kpis_customers_counted": ("active_customers", "date_day = ?", 0),
    "kpis.kpi_daily": ("value", "date_day = ? and kpi_name = 'billings_usd'", -5),
}


def count(conn: duckdb.DuckDBPyConnection, kpi: str, day: dt.date) -> int:
    return int(scalar(conn, "select value from kpis.kpi_daily where kpi_name = ? and date_day = ?", [kpi, day]))


def test_the_counted_kpis_recount_the_days_an_old_state_a_lead_or_a_period_changes(built: Path, tmp_path: Path) -> None:
    settings = copy_of(built, tmp_path)
    old_day = BUILT_START + dt.timedelta(days=20)
    with duckdb.connect(str(settings.build_db)) as conn:
        mql_day = scalar(
            conn,
            "select max(date_day) from intermediate.int_kpis_funnel_counted where kpi_name = 'mqls' and date_day < ?",
            [LAST - dt.timedelta(days=30)],
        )
        kept = {}
        for table, (column, key, offset) in MARKS.items():
            day = old_day + dt.timedelta(days=offset)
            kept[table] = scalar(conn, f"select {column} from {table} where {key}", [day])
            conn.execute(f"update {table} set {column} = -1 where {key}", [day])
        # the first opportunity lost after the MQL day is won on the day it closed (a stage change loaded on the last
        # day: its dates and amount, which the money KPIs read, are unchanged)
        won_day = scalar(
            conn, "select min(closed_date) from marts.fct_opportunities where not is_won and closed_date > ?", [mql_day]
        )
        conn.execute(
            "insert into raw.crm__opportunity_history select * replace ('WON-' || Id as Id, 'Closed Won' as NewValue, "
            "? as _partition, md5(_record_hash) as _record_hash) from raw.crm__opportunity_history "
            "where NewValue = 'Closed Lost' and OpportunityId = (select min(opportunity_id) "
            "from marts.fct_opportunities where not is_won and closed_date = ?)",
            [LAST, won_day],
        )
        won = count(conn, "opportunities_won", won_day)
    # a build of the last day: the customer counts and kpi_daily leave the old days as they are, kpi_daily counts the
    # opportunity won
    build(settings, LAST, LAST, select=MODELS)
    with duckdb.connect(str(settings.build_db)) as conn:
        assert count(conn, "opportunities_won", won_day) == won + 1, "the won opportunity was not counted"
        for table, (column, key, offset) in MARKS.items():
            day = old_day + dt.timedelta(days=offset)
            assert scalar(conn, f"select {column} from {table} where {key}", [day]) == -1, f"{table} recounted"
            conn.execute(f"update {table} set {column} = ? where {key}", [kept[table], day])
        # the ERP ends, on the old day, a customer's only live contract (a status change loaded on the last day)
        end_a_contract(conn, LAST, dated=old_day)
        # and the CRM corrects the address of the only lead of a person whose MQL day is the MQL day, to a free
        # mail one: the lead no longer qualifies, the person is gone
        lead = scalar(
            conn,
            "select min(leads.lead_id) from intermediate.int_leads_qualified as leads inner join "
            "intermediate.int_people_qualified as people on leads.email = people.email "
            "where people.mql_date = ? and people.lead_count = 1",
            [mql_day],
        )
        newer_version(conn, f"Id = '{lead}'", LAST, Email="'requalified@gmail.com'")
        changed = {"active_customers": old_day, "mqls": mql_day}
        # as counted before (kpi_daily followed the marked count: it recomputes from there in the next build)
        before = {
            "active_customers": kept["intermediate.int_kpis_customers_counted"],
            "mqls": scalar(
                conn,
                "select value from intermediate.int_kpis_funnel_counted where kpi_name = 'mqls' and date_day = ?",
                [mql_day],
            ),
        }
    build(settings, LAST, LAST, select=MODELS)
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        after = {kpi: count(conn, kpi, day) for kpi, day in changed.items()}
    assert after == {kpi: value - 1 for kpi, value in before.items()}, "the changes did not reach the old days"
    equal_a_full_refresh(settings, KPIS)
    # a definition period adopted from an old day (a longer grace before delinquency): the states of every
    # customer from then, and the funnel's days from then (no person is judged under it yet)
    adopted = LAST - dt.timedelta(days=60)
    with duckdb.connect(str(settings.build_db)) as conn:
        periods = "reference.registry_definition_periods"
        conn.execute(
            f"insert into {periods} select * replace (2 as period, 'v2' as definition_version, ? as effective_from, "
            "delinquency_days + 30 as delinquency_days) from " + periods,
            [adopted],
        )
        conn.execute(f"update {periods} set effective_to = ? where period = 1", [adopted - dt.timedelta(days=1)])
        before = {kpi: count(conn, kpi, LAST) for kpi in ("delinquent_customers", "mqls")}
    build(settings, LAST, LAST, select=MODELS)
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        after = {kpi: count(conn, kpi, LAST) for kpi in ("delinquent_customers", "mqls")}
    assert after != before, "the period changed no count: the test proves nothing"
    equal_a_full_refresh(settings, KPIS)

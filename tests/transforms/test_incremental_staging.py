"""The staging models over the sources' versioned records are incremental on DuckDB (docs/decisions/0065): a
build recomputes the records whose versions its window loaded and leaves every other row as it is, and what
it leaves equals a full refresh, through the traps of versioned records: a correction loaded on a later day,
late data, an orphan released into its own older partition, and a re-run of an old day that drops a record's
latest version or every version of a record. So do the models above them that read what a window loaded
(the facts of payments and credit memos, decision 0067), the daily models that recompute from the first
day a window's records change, and the people models, which recompute the people whose leads changed, by a
lead's address before and after (a corrected address moves a lead to another person; decision 0076). The
customer states and health marts recompute the customers whose inputs changed (decision 0081): they equal a
full refresh after every build, through a payment corrected and a contract ended on an old day.

The raw layer is changed here as the loads change it (a partition replaced, a released orphan inserted with
its partition and noted in the ledger: tests/dataops/ingest/test_ingest.py holds the loads to that)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.ingest.ledger import record_release
from dataops.transform.runner import run_dbt
from tests.conftest import BUILT_DAYS, BUILT_START
from tests.pipeline import tables

pytestmark = pytest.mark.xdist_group("built")

# model: (raw table, raw key, staged key, a column the test marks)
STAGED = {
    "stg_crm__leads": ("crm__leads", "Id", "lead_id", "crm_status"),
    "stg_crm__lead_changes": ("crm__lead_history", "Id", "lead_change_id", "new_value"),
    "stg_accounting__journal_lines": (
        "accounting__journal_lines",
        "journal_no || '-' || lpad(cast(line_no as string), 3, '0')",
        "journal_line_id",
        "description",
    ),
    "stg_accounting__invoices": ("accounting__invoices", "invoice_no", "invoice_id", "invoice_type"),
    "stg_accounting__payments": ("accounting__payments", "payment_no", "payment_id", "payment_method"),
    "stg_accounting__credit_memos": ("accounting__credit_memos", "memo_no", "credit_memo_id", "credit_reason"),
}
# the models above them that read what a window loaded, and the daily models that recompute from the first day
# the window's records change (decision 0006): the scenario below builds them with the staging models
DOWNSTREAM = {
    "intermediate": ("int_invoices_settled", "int_kpis_money_summed", "int_leads_qualified", "int_people_qualified"),
    "marts": (
        "fct_payments",
        "fct_credit_memos",
        "fct_customer_states_daily",
        "fct_customer_health_daily",
        "fct_customer_state_events",
        "fct_leads",
        "dim_people",
    ),
    "kpis": ("kpi_daily",),
}
LAST = BUILT_START + dt.timedelta(days=BUILT_DAYS - 1)
RUN = ["run", "--select", *STAGED]
# tables rebuilt whole that the states read: the scenario cancels a contract
REBUILT = ("stg_erp__contract_status_changes", "int_contracts_status_spells")
SCENARIO = [*RUN, *REBUILT, *(model for models in DOWNSTREAM.values() for model in models)]
# the models a full build writes in lead order (decision 0082)
LEAD_ORDER = (
    "staging.stg_crm__leads",
    "staging.stg_crm__lead_changes",
    "intermediate.int_leads_qualified",
    "marts.fct_leads",
)
# the marts that recompute the customers whose inputs changed (decision 0081), and a column each test marks
CUSTOMER_MARTS = {"fct_customer_states_daily": "previous_state", "fct_customer_health_daily": "health_score"}
# the states' event log, which follows the customers the states recomputed
STATE_EVENTS = "fct_customer_state_events"


def copy_of(built: Path, tmp_path: Path) -> Settings:
    root = tmp_path / "data"
    shutil.copytree(built / "warehouse", root / "warehouse")
    shutil.copytree(built / "dbt_runs", root / "dbt_runs", ignore=shutil.ignore_patterns("*-*-*-*-*"))
    return Settings(root)


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, parameters: list[object] | None = None) -> Any:
    row = conn.execute(sql, parameters or []).fetchone()
    assert row is not None
    return row[0]


def build(settings: Settings, start: dt.date, end: dt.date, *args: str, select: list[str] = RUN) -> None:
    # no dbt JSON artefacts: only the command's success is read here (tests/transforms/test_incremental.py)
    window = (start.isoformat(), end.isoformat())
    result = run_dbt([*select, *args, "--no-write-json"], settings, window=window, in_process=True)
    assert result.success, result.output[-3000:]


def test_a_daily_build_recomputes_only_the_records_its_window_loaded(built: Path, tmp_path: Path) -> None:
    settings = copy_of(built, tmp_path)
    with duckdb.connect(str(settings.build_db)) as conn:
        # the latest days that hold a version of every model's records (invoices come on billing days)
        start = min(scalar(conn, f"select max(_partition) from raw.{raw}") for raw, *_ in STAGED.values())
        marked = {}
        for model, (raw, raw_key, key, column) in STAGED.items():
            loaded, older = (
                scalar(
                    conn,
                    f"select min({key}) from staging.{model} where {key} {'' if inside else 'not'} in "
                    f"(select {raw_key} from raw.{raw} where _partition between ? and ?)",
                    [start, LAST],
                )
                for inside in (True, False)
            )
            assert loaded is not None and older is not None, model
            conn.execute(f"update staging.{model} set {column} = 'marked' where {key} in (?, ?)", [loaded, older])
            marked[model] = (loaded, older)
    build(settings, start, LAST)
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        for model, (loaded, older) in marked.items():
            key, column = STAGED[model][2:]
            value = dict(
                conn.execute(
                    f"select {key}, {column} from staging.{model} where {key} in (?, ?)", [loaded, older]
                ).fetchall()
            )
            assert value[older] == "marked", f"{model}: a record the window did not load was rebuilt"
            assert value[loaded] != "marked", f"{model}: a record the window loaded was not recomputed"


def test_incremental_staging_and_what_reads_it_equal_a_full_refresh_through_corrections_releases_and_reruns(
    built: Path, tmp_path: Path
) -> None:
    settings = copy_of(built, tmp_path)
    old_day, rerun, new_day = (
        BUILT_START + dt.timedelta(days=10),
        LAST - dt.timedelta(days=30),
        LAST + dt.timedelta(1),
    )
    with duckdb.connect(str(settings.build_db)) as conn:
        # an old day's load corrected a lead (a newer version of a record first loaded earlier), its address
        # too: the lead moves to another person, and back when the re-run below drops this version
        fallen_back = newer_version(conn, "Id > ''", rerun, Status="'Reworked'", Email=another_email(rerun))
    build(settings, rerun, rerun, select=SCENARIO)
    customer_marts_equal_a_full_refresh(settings, rerun)
    with duckdb.connect(str(settings.build_db)) as conn:
        # a day's load: another lead corrected, journal lines of an old period arriving late, and lead
        # changes released from quarantine into their own, older partition
        corrected = newer_version(
            conn, f"Id <> '{fallen_back}'", new_day, Status="'Corrected'", Email=another_email(new_day)
        )
        # a person none of whose leads the day loads: the people models leave their row as it is
        untouched, lead_count = mark_a_person(conn, new_day)
        conn.execute(
            "insert into raw.accounting__journal_lines select * replace (? as _partition, 'LATE-' || journal_no "
            "as journal_no, md5(_record_hash) as _record_hash) from raw.accounting__journal_lines "
            "where _partition = ? limit 3",
            [new_day, old_day],
        )
        conn.execute(
            "create temp table freed as select * replace ('RELEASED-' || Id as Id, md5(_record_hash) as "
            "_record_hash) from raw.crm__lead_history where _partition = ? limit 2",
            [old_day],
        )
        conn.execute("insert into raw.crm__lead_history select * from freed")
        record_release(conn, "crm", "lead_history", "freed")
        # and payments and credit memos released the same way, each into the last older day that has some
        for table, key in (("payments", "payment_no"), ("credit_memos", "memo_no")):
            release(conn, "accounting", table, key, before=rerun)
        # and a payment corrected (a newer version of a payment first loaded on an earlier day)
        conn.execute(
            "insert into raw.accounting__payments select * replace (? as _partition, amount + 1 as amount, "
            "md5(_record_hash) as _record_hash) from raw.accounting__payments where payment_no = "
            "(select min(payment_no) from raw.accounting__payments where _partition < ?)",
            [new_day, rerun],
        )
    build(settings, new_day, new_day, select=SCENARIO)
    with duckdb.connect(str(settings.build_db)) as conn:
        for model in ("intermediate.int_people_qualified", "marts.dim_people"):
            assert scalar(conn, f"select lead_count from {model} where email = ?", [untouched]) == -1, model
            conn.execute(f"update {model} set lead_count = ? where email = ?", [lead_count, untouched])
    customer_marts_equal_a_full_refresh(settings, new_day)
    with duckdb.connect(str(settings.build_db)) as conn:
        # the old day's re-run also corrects a payment: its invoice is no longer settled, its customer's states
        # change (delinquent); and it ends a customer's only live contract, dated in the history's first days
        # (before any day the window's documents touch: the states and their event log recompute that customer
        # from then), its health scores from that day go; a customer none of whose inputs change keeps its rows
        # in both marts
        unsettled = unsettle_an_invoice(conn, rerun)
        ended = end_a_contract(conn, rerun, dated=BUILT_START + dt.timedelta(days=2))
        states_before = conn.execute(
            "select * from marts.fct_customer_states_daily where customer_id = ? order by all", [unsettled]
        ).fetchall()
        marks = mark_a_customer(conn, (unsettled, ended))
        # the old day re-run: the re-extracted day no longer holds the lead's newer version (its older one is
        # left), nor a lead change it held the only version of
        vanished = only_version_in(conn, "raw.crm__lead_history", "Id", rerun)
        conn.execute("delete from raw.crm__leads where _partition = ? and Id = ?", [rerun, fallen_back])
        conn.execute("delete from raw.crm__lead_history where _partition = ? and Id = ?", [rerun, vanished])
        # nor a lead it held the only version of (the CRM deleted it): the models keyed by the lead drop it
        gone = only_version_in(conn, "raw.crm__leads", "Id", rerun)
        conn.execute("delete from raw.crm__leads where _partition = ? and Id = ?", [rerun, gone])
    build(settings, rerun, rerun, select=SCENARIO)
    with duckdb.connect(str(settings.build_db)) as conn:
        states_after = conn.execute(
            "select * from marts.fct_customer_states_daily where customer_id = ? order by all", [unsettled]
        ).fetchall()
        for (model, column), (customer, day, value) in zip(CUSTOMER_MARTS.items(), marks, strict=True):
            where = "where customer_id = ? and date_day = ?"
            kept = scalar(conn, f"select {column} from marts.{model} {where}", [customer, day])
            assert kept == MARK[column], f"{model}: a customer none of whose inputs changed was recomputed"
            conn.execute(f"update marts.{model} set {column} = ? {where}", [value, customer, day])
    # the states' event log read the marked row if its day is in the window: the window's events again
    build(settings, rerun, rerun, select=["run", "--select", STATE_EVENTS])
    assert states_after != states_before, "the corrected payment changed no state: the test proves nothing"
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        scored = "select count(*) from marts.fct_customer_health_daily where customer_id = ? and date_day >= ?"
        assert scalar(conn, scored, [ended, rerun]) == 0, "a customer without a contract keeps health scores"
    # the customer marts as the last builds left them are among the tables held to the full refresh below
    incremental = tables(settings.build_db, ("staging", *DOWNSTREAM))
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        leads = dict(
            conn.execute(
                "select lead_id, crm_status from staging.stg_crm__leads where lead_id in (?, ?)",
                [corrected, fallen_back],
            ).fetchall()
        )
        changes = conn.execute(
            "select count(*) filter (where lead_change_id like 'RELEASED-%'), "
            "count(*) filter (where lead_change_id = ?) from staging.stg_crm__lead_changes",
            [vanished],
        ).fetchone()
    assert leads[corrected] == "Corrected" and leads[fallen_back] not in {"Reworked", None}
    assert changes == (2, 0)
    assert gone is not None and gone not in {row[0] for row in incremental["intermediate.int_leads_qualified"]}
    build(settings, BUILT_START, new_day, "--full-refresh", select=SCENARIO)
    full = tables(settings.build_db, ("staging", *DOWNSTREAM))
    assert sum(payment[0].startswith("RELEASED-") for payment in full["marts.fct_payments"]) == 2
    assert sum(memo[0].startswith("RELEASED-") for memo in full["marts.fct_credit_memos"]) == 2
    models = [f"staging.{model}" for model in STAGED]
    models += [f"{schema}.{model}" for schema, names in DOWNSTREAM.items() for model in names]
    for model in models:
        assert incremental[model] == full[model], model
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        # a full build writes the models keyed by the lead in lead order: a window's key range skips the row
        # groups of the other leads (decision 0082)
        for model in LEAD_ORDER:
            back = f"select count(*) from (select lead_id < lag(lead_id) over (order by rowid) as back from {model})"
            assert scalar(conn, f"{back} where back") == 0, f"{model} is not written in lead order"


def only_version_in(conn: duckdb.DuckDBPyConnection, table: str, key: str, partition: dt.date) -> Any:
    """The least key of a raw table whose only version was loaded in ``partition`` (a re-run dropping it drops
    the record)."""
    return scalar(
        conn,
        f"select min({key}) from {table} where _partition = ? and {key} not in "
        f"(select {key} from {table} where _partition <> ?)",
        [partition, partition],
    )


def release(conn: duckdb.DuckDBPyConnection, system: str, table: str, key: str, before: dt.date) -> None:
    """Releases from quarantine, into the last partition before ``before`` that holds any, copies of two of
    its rows under new keys (as a load releases orphans whose parent it has just loaded)."""
    raw = f"raw.{system}__{table}"
    day = scalar(conn, f"select max(_partition) from {raw} where _partition < ?", [before])
    conn.execute(
        f"create temp table freed_{table} as select * replace ('RELEASED-' || {key} as {key}, "
        f"md5(_record_hash) as _record_hash) from {raw} where _partition = ? order by {key} limit 2",
        [day],
    )
    conn.execute(f"insert into {raw} select * from freed_{table}")
    record_release(conn, system, table, f"freed_{table}")


def newer_version(conn: duckdb.DuckDBPyConnection, which: str, partition: dt.date, **values: str) -> str:
    """Loads into ``partition`` a newer version of the first lead loaded before it (``which`` more): the
    source changed each column of ``values`` to its SQL expression. Returns the lead's id."""
    lead = scalar(conn, f"select min(Id) from raw.crm__leads where _partition < ? and {which}", [partition])
    changed = "".join(f"{value} as {column}, " for column, value in values.items())
    conn.execute(
        f"insert into raw.crm__leads select * replace (? as _partition, {changed}"
        "SystemModstamp + interval 1 day as SystemModstamp, md5(_record_hash) as _record_hash) "
        "from raw.crm__leads where Id = ?",
        [partition, lead],
    )
    return str(lead)


def another_email(before: dt.date) -> str:
    """SQL for the address of the last lead loaded before ``before``: a lead given it moves to that person."""
    return (
        "(select Email from raw.crm__leads where Id = "
        f"(select max(Id) from raw.crm__leads where _partition < '{before.isoformat()}'))"
    )


def mark_a_person(conn: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[str, int]:
    """Marks (a lead count of -1) the rows of a person none of whose leads ``day`` loads, changes or moves a
    lead to (another_email); returns the email and the lead count it had."""
    email = scalar(
        conn,
        "select min(email) from intermediate.int_leads_qualified where email not in "
        "(select email from intermediate.int_leads_qualified where email is not null and lead_id in "
        "(select Id from raw.crm__leads where _partition = ? union select LeadId from raw.crm__lead_history "
        "where _partition = ? union select max(Id) from raw.crm__leads where _partition < ?))",
        [day, day, day],
    )
    count = scalar(conn, "select lead_count from marts.dim_people where email = ?", [email])
    for model in ("intermediate.int_people_qualified", "marts.dim_people"):
        conn.execute(f"update {model} set lead_count = -1 where email = ?", [email])
    return str(email), int(count)


MARK: dict[str, object] = {"previous_state": "marked", "health_score": -1}


def customer_marts_equal_a_full_refresh(settings: Settings, end: dt.date) -> None:
    """The customer marts as the builds left them equal a full refresh of the two (which then stays: the next
    build starts from it, the same rows and kept inputs)."""
    incremental = customer_marts(settings)
    build(settings, BUILT_START, end, "--full-refresh", select=["run", "--select", *CUSTOMER_MARTS, STATE_EVENTS])
    full = customer_marts(settings)
    for model in (*CUSTOMER_MARTS, STATE_EVENTS):
        assert incremental[model] == full[model], model


def customer_marts(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        return {
            model: conn.execute(f"select * from marts.{model} order by all").fetchall()
            for model in (*CUSTOMER_MARTS, STATE_EVENTS)
        }


def unsettle_an_invoice(conn: duckdb.DuckDBPyConnection, partition: dt.date) -> str:
    """Loads into ``partition`` a newer version, of amount 0, of the only settlement of an invoice first loaded
    earlier, of a customer not delinquent on the last day: the invoice is open again. Returns the customer."""
    payment, customer = conn.execute(
        "select payments.payment_id, bill_to.customer_id from staging.stg_accounting__payments as payments "
        "inner join intermediate.int_invoices_settled as settled on payments.invoice_id = settled.invoice_id "
        "inner join intermediate.int_bill_to_customers_resolved as bill_to on settled.bill_to_id = bill_to.bill_to_id "
        "where payments.loaded_partition < ? and settled.settled_date = payments.payment_date "
        "and payments.invoice_id not in (select invoice_id from staging.stg_accounting__credit_memos) "
        "and payments.invoice_id in (select invoice_id from staging.stg_accounting__payments group by 1 "
        "having count(*) = 1) and bill_to.customer_id in (select customer_id from marts.fct_customer_states_daily "
        "where date_day = ? and not is_delinquent) order by 1 desc limit 1",
        [partition, LAST],
    ).fetchone() or (None, None)
    assert payment is not None, "no invoice settled by a single payment"
    conn.execute(
        "insert into raw.accounting__payments select * replace (? as _partition, 0 as amount, "
        "md5(_record_hash) as _record_hash) from raw.accounting__payments where payment_no = ? "
        "qualify row_number() over (order by _partition desc) = 1",
        [partition, payment],
    )
    return str(customer)


def end_a_contract(conn: duckdb.DuckDBPyConnection, partition: dt.date, dated: dt.date) -> str:
    """Loads into ``partition`` a status change, dated ``dated``, that ends the only contract live or paused at
    the end of the history of a customer scored on the last day. Returns the customer."""
    contract, customer = conn.execute(
        "select contract_id, customer_id from intermediate.int_contracts_status_spells "
        "where is_live and valid_to_date is null and valid_from_date < ? and customer_id in "
        "(select customer_id from marts.fct_customer_health_daily where date_day = ?) and customer_id not in "
        "(select customer_id from intermediate.int_contracts_status_spells where valid_to_date is null "
        "and (is_live or status = 'paused') group by 1 having count(*) > 1) order by 1 limit 1",
        [dated, LAST],
    ).fetchone() or (None, None)
    assert contract is not None, "no customer with one live contract"
    conn.execute(
        "insert into raw.erp__contract_status_history select * replace (history_id + 1000000000 as history_id, "
        "to_status as from_status, 'ended' as to_status, cast(? as timestamp) + interval 12 hour as changed_at, "
        "? as _partition, md5(_record_hash) as _record_hash) from raw.erp__contract_status_history "
        "where contract_no = ? qualify row_number() over (order by changed_at desc) = 1",
        [dated, partition, contract],
    )
    return str(customer)


def mark_a_customer(conn: duckdb.DuckDBPyConnection, other_than: tuple[str, ...]) -> list[tuple[str, dt.date, object]]:
    """Marks, in each customer mart, the last day's row of a customer not in ``other_than`` (none of whose
    inputs the scenario changes after); returns each row's customer, day and the value it had."""
    marks = []
    for model, column in CUSTOMER_MARTS.items():
        customer, day, value = conn.execute(
            f"select customer_id, date_day, {column} from marts.{model} "
            "where customer_id not in (select unnest(?)) and date_day = ? order by 1 limit 1",
            [list(other_than), LAST],
        ).fetchone() or (None, None, None)
        assert customer is not None, model
        conn.execute(
            f"update marts.{model} set {column} = ? where customer_id = ? and date_day = ?",
            [MARK[column], customer, day],
        )
        marks.append((str(customer), day, value))
    return marks

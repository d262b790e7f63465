"""When each invoice was settled is incremental on DuckDB (docs/decisions/0088): a build recomputes the invoices
whose staged row, payments or credit memos changed since the last build, leaves every other invoice's row as
it is, and equals a full refresh after each build, through the traps of versioned documents: a payment moved
to another invoice on an old day and moved back when that day is re-run, an invoice amended (re-opened), a
late payment that settles an open invoice, payments and credit memos released from quarantine into their own
older partition (decision 0067), and a re-run that drops a payment's and an invoice's only version.

Each step builds, on a copy of the ``built`` warehouse, the three staging models and the settled invoices
(tests/transforms/test_incremental_staging.py builds the same way); after each, the model and the documents it
keeps equal a full refresh of it, which then stays: the next build starts from the same state."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from tests.conftest import BUILT_START
from tests.transforms.test_incremental_staging import (
    LAST,
    build,
    copy_of,
    only_version_in,
    release,
    scalar,
)

pytestmark = pytest.mark.xdist_group("built")

SETTLED = "intermediate.int_invoices_settled"
KEPT = "pipeline.invoice_documents_seen"
MODELS = [
    "run",
    "--select",
    "stg_accounting__invoices",
    "stg_accounting__payments",
    "stg_accounting__credit_memos",
    "int_invoices_settled",
]
# an invoice settled by one payment and no credit memo, loaded before a day
SETTLED_BY_ONE = (
    "select settled.invoice_id, payments.payment_id from {settled} as settled "
    "inner join staging.stg_accounting__payments as payments on settled.invoice_id = payments.invoice_id "
    "where settled.settled_date is not null and payments.loaded_partition < ? "
    "and settled.invoice_id not in (select invoice_id from staging.stg_accounting__credit_memos) "
    "and settled.invoice_id in (select invoice_id from staging.stg_accounting__payments group by 1 "
    "having count(*) = 1) order by 1 {order} limit 1"
).format(settled=SETTLED, order="{order}")


def settled(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        return {table: conn.execute(f"select * from {table} order by all").fetchall() for table in (SETTLED, KEPT)}


def equal_a_full_refresh(settings: Settings, end: dt.date) -> dict[str, object]:
    """The model and its kept documents as the builds left them equal a full refresh of the model (which then
    stays). Returns each invoice's settled date."""
    incremental = settled(settings)
    build(settings, BUILT_START, end, "--full-refresh", select=["run", "--select", "int_invoices_settled"])
    full = settled(settings)
    for table in (SETTLED, KEPT):
        assert incremental[table] == full[table], table
    return {str(row[0]): row[-1] for row in full[SETTLED]}


def test_settled_invoices_follow_moved_amended_late_released_and_dropped_documents(built: Path, tmp_path: Path) -> None:
    settings = copy_of(built, tmp_path)
    new_day = LAST + dt.timedelta(days=1)
    with duckdb.connect(str(settings.build_db)) as conn:
        # the old day re-run below: a billing day a month back (it holds invoices to drop)
        rerun = scalar(
            conn,
            "select max(_partition) from raw.accounting__invoices where _partition <= ?",
            [LAST - dt.timedelta(30)],
        )
        # an old day's load moved a payment that alone settled its invoice to another invoice
        moved_from, moved = conn.execute(SETTLED_BY_ONE.format(order="asc"), [rerun]).fetchone() or (None, None)
        moved_to = scalar(conn, f"select max(invoice_id) from {SETTLED} where settled_date is null")
        assert moved_from is not None and moved_to is not None
        conn.execute(
            "insert into raw.accounting__payments select * replace (? as invoice_no, ? as _partition, "
            "md5(_record_hash) as _record_hash) from raw.accounting__payments where payment_no = ? "
            "qualify row_number() over (order by _partition desc) = 1",
            [moved_to, rerun, moved],
        )
    build(settings, rerun, rerun, select=MODELS)
    dates = equal_a_full_refresh(settings, rerun)
    assert dates[moved_from] is None, "the moved payment's invoice stayed settled"
    with duckdb.connect(str(settings.build_db)) as conn:
        # a day's load: an invoice settled by one payment amended to a larger amount (open again), a late payment
        # that settles an open invoice, and payments and credit memos released into older partitions
        amended, _ = conn.execute(SETTLED_BY_ONE.format(order="desc"), [rerun]).fetchone() or (None, None)
        conn.execute(
            "insert into raw.accounting__invoices select * replace (amount + 1000 as amount, ? as _partition, "
            "md5(_record_hash) as _record_hash) from raw.accounting__invoices where invoice_no = ? "
            "qualify row_number() over (order by _partition desc) = 1",
            [new_day, amended],
        )
        late = scalar(
            conn, f"select min(invoice_id) from {SETTLED} where settled_date is null and invoice_id <> ?", [moved_to]
        )
        conn.execute(
            "insert into raw.accounting__payments select * replace ('LATE-' || payment_no as payment_no, "
            "? as invoice_no, ? as payment_date, (select max(amount) from raw.accounting__invoices "
            "where invoice_no = ?) as amount, ? as _partition, md5(_record_hash) as _record_hash) "
            "from raw.accounting__payments "
            "where payment_no = ? qualify row_number() over (order by _partition desc) = 1",
            [late, new_day, late, new_day, moved],
        )
        for table, key in (("payments", "payment_no"), ("credit_memos", "memo_no")):
            release(conn, "accounting", table, key, before=rerun)
        # an invoice none of whose documents the day loads keeps its row as it is
        untouched = scalar(
            conn,
            f"select min(invoice_id) from {SETTLED} where invoice_id not in (?, ?) and invoice_id not in "
            "(select invoice_no from raw.accounting__payments where _partition >= ? "
            "union select invoice_no from raw.accounting__credit_memos where _partition >= ?)",
            [amended, late, rerun, rerun],
        )
        value = scalar(conn, f"select due_date from {SETTLED} where invoice_id = ?", [untouched])
        conn.execute(f"update {SETTLED} set due_date = '1900-01-01' where invoice_id = ?", [untouched])
    build(settings, new_day, new_day, select=MODELS)
    with duckdb.connect(str(settings.build_db)) as conn:
        kept = scalar(conn, f"select due_date from {SETTLED} where invoice_id = ?", [untouched])
        assert kept == dt.date(1900, 1, 1), "an invoice none of whose documents changed was recomputed"
        conn.execute(f"update {SETTLED} set due_date = ? where invoice_id = ?", [value, untouched])
    dates = equal_a_full_refresh(settings, new_day)
    assert dates[amended] is None and dates[late] == new_day
    with duckdb.connect(str(settings.build_db)) as conn:
        # the old day re-run: the re-extracted day no longer holds the moved payment's newer version (it is back
        # on its first invoice), nor a payment and an invoice it held the only version of
        conn.execute("delete from raw.accounting__payments where _partition = ? and payment_no = ?", [rerun, moved])
        for table, key in (("payments", "payment_no"), ("invoices", "invoice_no")):
            only = only_version_in(conn, f"raw.accounting__{table}", key, rerun)
            deleted = conn.execute(
                f"delete from raw.accounting__{table} where _partition = ? and {key} = ?", [rerun, only]
            ).fetchone()
            assert deleted == (1,), table
        gone = scalar(conn, f"select count(*) from {SETTLED}")
    build(settings, rerun, rerun, select=MODELS)
    dates = equal_a_full_refresh(settings, new_day)
    assert dates[moved_from] is not None, "the payment moved back did not settle its invoice again"
    assert len(dates) == gone - 1, "the invoice dropped by the re-run is still there"
    # without the kept documents (the first build after the change, or the table lost), a re-run that drops the
    # only version of an invoice no payment or credit memo names still removes its row: nothing staged knows that
    # invoice any more, so every row is recomputed
    with duckdb.connect(str(settings.build_db)) as conn:
        day, dropped = conn.execute(  # the latest day that holds the only version of an invoice nothing settled
            "select _partition, min(invoice_no) from raw.accounting__invoices where invoice_no in (select invoice_no "
            "from raw.accounting__invoices group by 1 having count(*) = 1) and _partition <= ? and invoice_no not in "
            "(select invoice_no from raw.accounting__payments union select invoice_no from "
            "raw.accounting__credit_memos) group by 1 order by 1 desc limit 1",
            [LAST],
        ).fetchone() or (None, None)
        assert day is not None
        conn.execute("delete from raw.accounting__invoices where _partition = ? and invoice_no = ?", [day, dropped])
        conn.execute(f"drop table {KEPT}")
    build(settings, day, day, select=MODELS)
    again = equal_a_full_refresh(settings, new_day)
    assert dropped not in again, "an invoice dropped by a re-run without the kept documents is still there"

"""The money KPIs per day are incremental on DuckDB (docs/decisions/0083): a build recomputes the days from the
first one its window's documents, or the contracts, opportunities and rates changed since the last build, can
change, and kpi_daily follows: both equal a full refresh after an old contract amended and an old invoice
corrected, and after an old day re-run twice.

Each step builds, on a copy of the ``built`` warehouse, the models between the changed raw records and the
KPIs (tests/transforms/test_incremental_staging.py builds the same way)."""

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
    scalar,
)

pytestmark = pytest.mark.xdist_group("built")

KPIS = ("intermediate.int_kpis_money_summed", "kpis.kpi_daily")
MODELS = [
    "run",
    "--select",
    "stg_erp__contracts",
    "stg_erp__contract_status_changes",
    "int_contracts_status_spells",
    "fct_contracts",
    "fct_contract_state_events",
    "stg_accounting__invoices",
    "fct_invoices",
    *(kpi.split(".")[1] for kpi in KPIS),
]


def kpis(settings: Settings, names: tuple[str, ...] = KPIS) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        return {kpi: conn.execute(f"select * from {kpi} order by all").fetchall() for kpi in names}


def equal_a_full_refresh(settings: Settings, names: tuple[str, ...] = KPIS) -> dict[str, list[tuple[object, ...]]]:
    """The models ``names`` as the builds left them, asserted equal to a full refresh of them (which then
    stays)."""
    incremental = kpis(settings, names)
    build(settings, BUILT_START, LAST, "--full-refresh", select=["run", "--select", *(k.split(".")[1] for k in names)])
    full = kpis(settings, names)
    for kpi in names:
        assert incremental[kpi] == full[kpi], kpi
    return incremental


def test_the_money_kpis_recompute_the_days_an_old_contract_or_invoice_changes(built: Path, tmp_path: Path) -> None:
    settings = copy_of(built, tmp_path)
    old_day = BUILT_START + dt.timedelta(days=20)
    money = "intermediate.int_kpis_money_summed where date_day = ? and kpi_name = 'mrr_usd'"
    with duckdb.connect(str(settings.build_db)) as conn:
        mrr = scalar(conn, f"select value from {money}", [old_day])
        conn.execute(f"update {money.replace(' where', ' set value = -1 where')}", [old_day])
    # a build of the last day, nothing changed before it: the old day's money is left as it is
    build(settings, LAST, LAST, select=MODELS)
    with duckdb.connect(str(settings.build_db)) as conn:
        assert scalar(conn, f"select value from {money}", [old_day]) == -1, "an old day was recomputed"
        conn.execute(f"update {money.replace(' where', ' set value = ? where')}", [mrr, old_day])
        # the ERP amends a contract live on the old day (a newer version loaded on the last day), and the
        # accounting corrects an invoice of the old day
        contract = scalar(
            conn,
            "select min(contract_id) from intermediate.int_contracts_status_spells where is_live "
            "and valid_from_date <= ? and (valid_to_date is null or valid_to_date > ?)",
            [old_day, old_day],
        )
        conn.execute(
            "insert into raw.erp__contracts select * replace (monthly_amount + 1000 as monthly_amount, "
            "updated_at + interval 1 day as updated_at, ? as _partition, md5(_record_hash) as _record_hash) "
            "from raw.erp__contracts where contract_no = ? qualify row_number() over (order by updated_at desc) = 1",
            [LAST, contract],
        )
        conn.execute(
            "insert into raw.accounting__invoices select * replace (amount + 1 as amount, ? as _partition, "
            "md5(_record_hash) as _record_hash) from raw.accounting__invoices where invoice_no = "
            "(select min(invoice_no) from raw.accounting__invoices where invoice_date = "
            "(select min(invoice_date) from raw.accounting__invoices where invoice_date >= ?))",
            [LAST, old_day],
        )
    build(settings, LAST, LAST, select=MODELS)
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        assert scalar(conn, f"select value from {money}", [old_day]) > mrr, "the amended contract changed nothing"
    equal_a_full_refresh(settings)
    # an old day re-run, twice: the same KPIs each time, those of a full refresh
    rerun = LAST - dt.timedelta(days=30)
    build(settings, rerun, rerun, select=MODELS)
    once = equal_a_full_refresh(settings)
    build(settings, rerun, rerun, select=MODELS)
    assert kpis(settings) == once

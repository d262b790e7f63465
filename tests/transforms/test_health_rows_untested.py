"""The health mart's key test reads the customer-days written since it last passed (docs/decisions/0083, the
rules of 0077): a duplicate among older rows is not read by a daily build, but is after a full build and when
the record is missing, and a customer-day the record holds is read until a build's tests pass over it.

Each step builds the health mart (and its tests) on a copy of the ``built`` warehouse, whose Dagster run kept
and cleared the record (tests/transforms/test_rows_untested.py builds the lead models the same way)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.transform.runner import DbtResult, run_dbt
from tests.transforms.test_incremental_staging import (
    LAST,
    copy_of,
    scalar,
)
from tests.transforms.test_rows_untested import failed, untested

pytestmark = pytest.mark.xdist_group("built")

HEALTH = "fct_customer_health_daily"
KEY_TEST = "column_rules_fct_customer_health_daily"  # its unique_together rule (decision 0098)


def build(settings: Settings, *args: str, command: str = "build") -> DbtResult:
    # no dbt JSON artefacts: the results come from dbt's result in memory (run_dbt in process)
    window = (LAST.isoformat(), LAST.isoformat())
    return run_dbt([command, "--select", HEALTH, *args, "--no-write-json"], settings, window=window, in_process=True)


def plant_a_duplicate(settings: Settings) -> tuple[str, dt.date]:
    """A copy of the first day's row of a customer, by hand (no build writes one); returns its customer-day."""
    with duckdb.connect(str(settings.build_db)) as conn:
        customer, day = conn.execute(
            f"select customer_id, date_day from marts.{HEALTH} order by date_day, customer_id limit 1"
        ).fetchone() or (None, None)
        assert customer is not None
        conn.execute(
            f"insert into marts.{HEALTH} select * from marts.{HEALTH} where customer_id = ? and date_day = ?",
            [customer, day],
        )
    return str(customer), day


def test_the_health_key_test_reads_the_customer_days_written_since_it_last_passed(built: Path, tmp_path: Path) -> None:
    settings = copy_of(built, tmp_path)
    # the built warehouse's run kept a record and cleared it: its tests passed
    assert untested(settings, HEALTH) == 0
    customer, day = plant_a_duplicate(settings)
    # a build of the last day writes no row of that customer-day: its test does not read it
    normal = build(settings)
    assert normal.success, normal.output[-3000:]
    assert untested(settings, HEALTH) == 0
    # a customer-day of the record is read, from its day on: by its customer, and as every customer's
    for noted in ((customer, day), (None, day)):
        with duckdb.connect(str(settings.build_db)) as conn:
            conn.execute(f"insert into pipeline.untested__{HEALTH} values (?, ?)", list(noted))
        assert failed(build(settings, command="test")) == {KEY_TEST}
        with duckdb.connect(str(settings.build_db)) as conn:
            conn.execute(f"delete from pipeline.untested__{HEALTH}")
    # a full build notes every row: the next tests read the whole table, and keep reading it until they pass
    full = build(settings, "--full-refresh", command="run")
    assert full.success, full.output[-3000:]
    plant_a_duplicate(settings)
    assert failed(build(settings, command="test")) == {KEY_TEST}
    assert failed(build(settings, command="test")) == {KEY_TEST}
    # without the record (the first build after the change), the whole table is tested too
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute(f"drop table pipeline.untested__{HEALTH}")
    assert failed(build(settings)) == {KEY_TEST}
    assert untested(settings, HEALTH) == 1  # every row, until its tests pass
    with duckdb.connect(str(settings.build_db)) as conn:
        every = scalar(conn, f"select count(*) from pipeline.untested__{HEALTH} where customer_id is null")
        assert every == 1
        conn.execute(
            f"delete from marts.{HEALTH} where customer_id = ? and date_day = ?",
            [customer, day],
        )
    # the duplicate gone (with its original, rebuilt by the next full build): a build passes and clears it
    restored = build(settings, "--full-refresh")
    assert restored.success, restored.output[-3000:]
    assert untested(settings, HEALTH) == 0

"""Incremental runs, of a day or of several days at once, give exactly what one full refresh gives, table for
table (every table of the intermediate, marts and KPI schemas: each incremental model among them), late data
included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.ingest.pipeline import ingest
from dataops.transform.runner import run_dbt
from quality.contracts import contract_for
from source_systems.crm.server import start_in_thread
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import extractors, ingest_days, tables

# One test of about 60 CPU-s: a group of its own, so that the workers start it among the long ones (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("incremental")

# Starts mid-January so January closes (5th business day of February, Feb 7) inside the window and its late
# journal lines (dated Jan 31, arriving 1 to 8 days after the close) arrive during it; many payments are held
# back for a corrected re-export.
START = dt.date(2025, 1, 20)
# The first 12 days (to Jan 31, the month's end) are ingested and built at once, as a first backfill would.
# The incremental runs then build the month-start billing day alone (a window starting on the 1st, carrying
# January's stocks forward); the quiet days, the close and the two days after it in one run (as a build after a
# failed one covers every day waiting, decision 0035), in which the first of January's late journal lines
# arrive (seed 9: on Feb 8); the day more of them arrive alone (Feb 10): each recomputes from Jan 31, before its
# window and across the month's end; then the last two days, in which a corrected re-export of an earlier day
# arrives (Feb 9's payments, re-exported on Feb 12), so that run's window starts three days back: where an
# incremental model can go wrong. Jan 31, the close and the day after it were runs of their own; no
# incremental model treats them apart (the close is known to dim_dates alone, a table: it matters through the
# late lines after it), and they are still built: Jan 31 by the backfill and by every recomputation from it,
# the close in the quiet days' run. The asserts below check that late lines arrived in a one-day run and in a
# run of several days.
FIRST_RUN_END = dt.date(2025, 1, 31)
RUNS = [
    (dt.date(2025, 2, 1), dt.date(2025, 2, 1)),
    (dt.date(2025, 2, 2), dt.date(2025, 2, 9)),
    (dt.date(2025, 2, 10), dt.date(2025, 2, 10)),
    (dt.date(2025, 2, 11), dt.date(2025, 2, 12)),
]
# Every schema holding a materialised model: the incremental ones (dbt's config, on DuckDB) are among them.
SCHEMAS = ("staging", "intermediate", "marts", "kpis")
# dbt's JSON artefacts (the manifest twice per command, the run results) are not read here: writing them was
# about a sixth of each command's CPU in a profile. The partial parse is written either way.
BUILD = ["build", "--resource-type", "model", "--resource-type", "seed", "--no-write-json"]
# After the first run the views and seeds exist and their code does not change: skip re-creating them.
DAILY = ["build", "--resource-type", "model", "--exclude", "config.materialized:view", "--no-write-json"]
# Before the last run, only the incremental models and the tables they read: what an incremental model holds
# depends on its own past runs and on its inputs at each run. A table no incremental model reads (ten of them:
# the monthly and usage KPIs, some dimensions, staging nobody incremental reads) is computed afresh from its
# inputs whenever it is built, so building it once, in the last run, gives the table each daily run would
# have left; it is still compared with the full refresh like every other table.
INCREMENTAL = [*DAILY, "--select", "+config.materialized:incremental"]


@pytest.mark.e2e
def test_daily_incremental_runs_equal_one_full_refresh(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    config = SimConfig(
        seed=9, scale=0.03, start=START, dirt=DirtRates(held_back_payment=0.3, late_journal=1.0), product_events=False
    )
    simulate(settings.sources_dir, FIRST_RUN_END, config)  # one call equals day by day (test_determinism)
    late_windows = 0
    with start_in_thread(settings.crm_db, rate_per_second=10_000, burst=10_000) as crm:
        accounting = extractors(settings, crm)["accounting"]
        ingest_days(settings, crm, START, FIRST_RUN_END)
        result = run_dbt(BUILD, settings, window=(START.isoformat(), FIRST_RUN_END.isoformat()), in_process=True)
        assert result.success, result.output[-3000:]
        for first, last in RUNS:
            simulate(settings.sources_dir, last)  # the business moves on, as in production
            ingest_days(settings, crm, first, last)
            days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
            reexported = sorted(
                {
                    old
                    for day in days
                    for old in (day - dt.timedelta(days=k) for k in (1, 2, 3))
                    if START <= old < first
                    and (settings.accounting_exports / old.isoformat() / "payments_v2.csv").exists()
                }
            )
            for old in reexported:  # what the accounting sensor triggers: that day's payments again
                ingest(settings, contract_for("accounting", "payments"), accounting, old, old)
            late_windows += bool(reexported)
            window = (min([first, *reexported]).isoformat(), last.isoformat())
            args = DAILY if (first, last) == RUNS[-1] else INCREMENTAL
            result = run_dbt(args, settings, window=window, in_process=True)
            assert result.success, (first, last, result.output[-3000:])
    incremental = tables(settings.build_db, SCHEMAS)
    result = run_dbt([*BUILD, "--full-refresh"], settings, in_process=True)
    assert result.success, result.output[-3000:]
    full = tables(settings.build_db, SCHEMAS)
    assert sorted(incremental) == sorted(full)
    for name in full:
        assert incremental[name] == full[name], name
    assert late_windows > 0, "re-exported payments must have arrived for the test to mean something"
    assert any(row[-1] for row in full["marts.fct_gl_entries"]), "and late journal lines (is_late_arrival)"
    # in a run of one day and in a run of several (the days their lines were loaded in)
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        query = "select distinct loaded_partition from marts.fct_gl_entries where is_late_arrival"
        late = {day for (day,) in conn.execute(query).fetchall()}
    assert any(first == last and first in late for first, last in RUNS), sorted(late)
    assert any(first < last and any(first <= day <= last for day in late) for first, last in RUNS), sorted(late)

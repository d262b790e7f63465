"""The day of a person's first lead (``first_lead_date``, decision 0087) against the simulator's own leads, and
a people table built before the column existed: its incremental build stops, naming the full refresh that
adds the column, rather than leaving the column half filled or out of its place."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.transform.runner import run_dbt
from source_systems.simulator.run import existing_config, state_dir
from source_systems.simulator.state import State

pytestmark = pytest.mark.xdist_group("built")


def frame(conn: duckdb.DuckDBPyConnection, query: str) -> pl.DataFrame:
    cursor = conn.execute(query)
    return pl.DataFrame(cursor.fetchall(), schema=[c[0] for c in cursor.description], orient="row")


def test_the_first_lead_date_is_the_day_the_simulator_created_the_persons_first_lead(built: Path) -> None:
    sources = Settings(built).sources_dir
    config = existing_config(sources)
    assert config is not None
    state, _ = State.load(state_dir(sources))
    created = state.table("leads").select(
        lead_id=pl.format("00Q{}", pl.col("lead").cast(pl.String).str.zfill(9)),
        created=pl.lit(config.start) + pl.duration(days=pl.col("created_day")),
    )
    with duckdb.connect(str(Settings(built).build_db), read_only=True) as conn:
        staged = frame(conn, "select lead_id, email from staging.stg_crm__leads where email is not null")
        built_people = frame(conn, "select email, first_lead_date from marts.dim_people")
        qualified = conn.execute(
            "select count(*) from intermediate.int_people_qualified as i join marts.dim_people as d "
            "using (email) where i.first_lead_date is distinct from d.first_lead_date"
        ).fetchone()
    truth = staged.join(created, on="lead_id").group_by("email").agg(first_lead_date=pl.col("created").min())
    assert truth.height == built_people.height and built_people["first_lead_date"].null_count() == 0
    joined = built_people.join(truth, on="email", how="left", suffix="_truth")
    assert joined.filter(pl.col("first_lead_date") != pl.col("first_lead_date_truth").cast(pl.Date)).height == 0
    assert joined["first_lead_date"].n_unique() > 1 and qualified == (0,)


def test_a_people_table_built_before_its_first_lead_date_stops_the_build_naming_the_full_refresh(
    built: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(built / "warehouse", root / "warehouse")
    shutil.copytree(built / "dbt_runs", root / "dbt_runs", ignore=shutil.ignore_patterns("*-*-*-*-*"))
    settings = Settings(root)
    with duckdb.connect(str(settings.build_db)) as conn:  # as a warehouse built before decision 0087 holds it
        conn.execute("alter table marts.dim_people drop column first_lead_date")
        before = conn.execute("select count(*) from marts.dim_people").fetchone()
    result = run_dbt(["run", "--select", "dim_people", "--no-write-json"], settings, in_process=True)
    (failed,) = [r["message"] for r in result.results if r["unique_id"] == "model.dataops.dim_people"]
    assert not result.success and "marts.dim_people was built before its column first_lead_date existed" in failed
    assert "dataops backfill --start D --end D --full-refresh" in failed
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        assert conn.execute("select count(*) from marts.dim_people").fetchone() == before

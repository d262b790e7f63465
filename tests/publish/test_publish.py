"""Write, audit, publish: only checked data reaches analysts, atomically, with flash/final values,
history and restatements."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from dataops.governance.pseudonym import rotate_key
from orchestration.lib.names import CHURN_MODEL_KEY, CHURN_RISK_KEY, EVENTS_KEY, EXTRACTS_KEY
from quality.gate import GATE
from tests.pipeline import run_job
from tests.publish.kept_digests import kept_and_fresh, tamper
from tests.published import LateRun, Published, built_not_published, copy_of

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("published")]
NOT_INGESTION = (
    dg.AssetSelection.all()
    - dg.AssetSelection.groups("lake", "erp", "crm", "accounting", "product")
    - dg.AssetSelection.assets(CHURN_MODEL_KEY)
)
# A build run of the day already landed: what the pipeline runs after a landing, without landing it again
BUILD_ONLY = (
    dg.AssetSelection.all()
    - dg.AssetSelection.groups("egress")
    - dg.AssetSelection.assets(CHURN_MODEL_KEY, EVENTS_KEY, EXTRACTS_KEY)
)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def analyst(published: Published, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(published.settings.analytics_db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_published_kpis_carry_flash_and_final(published: Published) -> None:
    rows = analyst(
        published,
        """
        select kpi.date_day, kpi.is_final, dates.month_close_date
        from kpis.kpi_daily as kpi join marts.dim_dates as dates using (date_day)
    """,
    )
    as_of = published.late_day - dt.timedelta(days=1)
    assert {is_final for _, is_final, _ in rows} == {True, False}  # January closed, February has not
    for day, is_final, close in rows:
        assert is_final == (close <= as_of), day
    history = analyst(published, "select count(*), count(distinct publish_id) from publish.kpi_history")[0]
    assert history[0] == len(rows) and history[1] == 1


def test_a_corrupted_mart_blocks_publishing(published: Published, tmp_path: Path) -> None:
    """A mart the gate refuses, in a build run of the published window: the gate runs whole in its one step,
    names the row, and nothing reaches analysts. The mart is corrupted in place (as a faulty model would leave
    it) rather than through raw: its inputs unchanged, the dbt step reports the window built and runs no
    dbt (decision 0020), so the run pays for the gate and not for a rebuild of the whole window."""
    case = copy_of(published, tmp_path)
    before = digest(case.settings.analytics_db)
    day = case.late_day - dt.timedelta(days=1)
    with duckdb.connect(str(case.settings.build_db)) as conn:  # a bad mart: an invoice paid one and a half times
        invoice, amount = conn.execute("""
            select invoice_id, invoice_amount from marts.fct_invoices
            where invoice_id in (select invoice_id from marts.fct_payments) order by invoice_amount limit 1
        """).fetchone()
        conn.execute(
            """
            insert into marts.fct_payments by name
            select 'PAY-CORRUPT' as payment_id, invoice_id, customer_id, bill_to_id, ? as payment_date,
                   currency_code, invoice_amount / 2 as payment_amount, invoice_amount_usd / 2 as payment_amount_usd,
                   'wire' as payment_method, ? as loaded_partition
            from marts.fct_invoices where invoice_id = ?
        """,
            [day, day, invoice],
        )
    result = run_job(case.root, day, day, selection=NOT_INGESTION)
    assert not result.success
    dbt_step = [e for e in result.get_asset_materialization_events() if e.step_key == "enterprise_model"]
    assert dbt_step and {e.materialization.metadata["dbt"].value for e in dbt_step} == {"unchanged, not rebuilt"}
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.asset_check_key.name for e in failed] == ["payments_within_invoiced"]
    cases = failed[0].metadata["failure_cases_json"].value
    assert any(row["invoice_id"] == invoice for row in cases)  # the check names the offending row
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    # the whole gate ran, in one step, and only the broken rule failed
    assert len([e for e in checks if e.step_key == "cleansing_gate"]) == len(GATE)
    failed_steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failed_steps == ["cleansing_gate"]
    published_steps = [e for e in result.get_asset_materialization_events() if e.asset_key.path[0] == "publish"]
    assert published_steps == []
    assert digest(case.settings.analytics_db) == before  # byte for byte what analysts had
    assert amount > 0


def test_a_late_journal_line_while_a_reader_holds_the_file_then_a_rerun(
    published: Published, late_run: LateRun, tmp_path: Path
) -> None:
    """One run on the day a late journal line arrives, with an analyst holding the published file open
    (``late_run``, shared with the dashboard's tests): the reader keeps a consistent snapshot, the line is one
    restatement, history keeps what was shown, and re-running the unchanged day afterwards publishes no
    change, with dbt skipped or run again."""
    shown_before = dict(analyst(published, "select date_day, value from kpis.kpi_daily where kpi_name = 'revenue_usd'"))
    first_publish = analyst(published, "select published_at from publish.publish_log")[0][0]
    late_log = (late_run.case.settings.dbt_runs_dir / late_run.run_id / "dbt.log").read_text()
    assert "Finished running" in late_log and '"level": "debug"' not in late_log  # dbt's file log: info level
    done = late_run.reader
    assert done[0] == "done" and done[1] == 3 and done[2] == 0  # a consistent snapshot, every read
    case = copy_of(late_run.case, tmp_path)
    assert analyst(case, "select count(*) from publish.publish_log")[0][0] == 2  # a new connection sees it

    restatements = analyst(
        case, "select kpi_name, period, old_value, new_value, was_final, cause from publish.kpi_restatements"
    )
    assert len(restatements) == 1
    kpi, period, old, new, was_final, cause = restatements[0]
    assert (kpi, period, was_final) == ("revenue_usd", dt.date(2025, 1, 31), True)
    truth = (
        pl.read_parquet(case.settings.truth_dir / "kpi_daily_history.parquet")
        .filter((pl.col("kpi") == "revenue_usd") & (pl.col("date") == period))
        .sort("known_at")
    )
    versions = dict(truth.select("known_at", "value").iter_rows())
    assert old == shown_before[period] == versions[period]  # what the business knew at the day's end
    assert new == versions[case.late_day] and new != old  # and what it knows since the line arrived
    assert "journal line" in cause and isinstance(new, Decimal)
    as_shown = analyst(
        case,
        f"""
        select value from publish.kpi_history
        where kpi_name = 'revenue_usd' and period = '{period}' and published_at <= '{first_publish}'
        order by published_at desc limit 1
    """,
    )
    assert as_shown == [(old,)]  # kpi_history still answers what the dashboard said before

    loaded: list[dg.Definitions] = []

    def definitions() -> dg.Definitions:
        """The platform's definitions for ``case``, loaded once for the three runs below (each load takes about
        a second of CPU; what a run reads from its environment, it reads when it runs)."""
        from orchestration.definitions import defs

        if not loaded:
            loaded.append(defs())
        return loaded[0]

    rerun = run_job(case.root, case.late_day, case.late_day, definitions=definitions)  # nothing new since
    assert rerun.success
    assert not (case.settings.dbt_runs_dir / rerun.run_id).exists()  # dbt did not run (docs/decisions/0020)
    models = [
        e
        for e in rerun.get_asset_materialization_events()
        if e.asset_key.path[0] in ("marts", "kpis") and e.asset_key != CHURN_RISK_KEY  # dbt's, not the scores
    ]
    assert len(models) >= 17
    assert {e.materialization.metadata["dbt"].value for e in models} == {"unchanged, not rebuilt"}
    assert {e.materialization.metadata["built_by_run"].value for e in models} == {late_run.run_id}
    publish = [e for e in rerun.get_asset_materialization_events() if e.asset_key.path[0] == "publish"]
    assert publish[-1].materialization.metadata["publish"].value == "unchanged, not published again"
    assert publish[-1].materialization.metadata["published_by_run"].value == late_run.run_id  # the gate still ran
    assert analyst(case, "select count(*) from publish.publish_log")[0][0] == 2  # and analysts keep their file

    rebuilt = run_job(  # the build alone: the landing just before found nothing new
        case.root,
        case.late_day,
        case.late_day,
        selection=BUILD_ONLY,
        run_config={"ops": {"enterprise_model": {"config": {"rebuild_unchanged": True}}}},
        definitions=definitions,
    )
    assert rebuilt.success
    publish = [e for e in rebuilt.get_asset_materialization_events() if e.asset_key.path[0] == "publish"]
    assert "publish" not in publish[-1].materialization.metadata  # a new build (its run) is published again
    assert publish[-1].materialization.metadata["kpi_values_changed"].value == 0
    assert publish[-1].materialization.metadata["restatements"].value == 0
    assert analyst(case, "select count(*) from publish.kpi_restatements") == [(1,)]
    with duckdb.connect(str(case.settings.build_db), read_only=True) as conn:
        assert conn.execute("select run_id from pipeline.dbt_build").fetchall() == [(rebuilt.run_id,)]

    one_model = run_job(  # a build of one model is no complete build: the next re-run must not skip
        case.root,
        case.late_day,
        case.late_day,
        selection=dg.AssetSelection.assets(dg.AssetKey(["marts", "fct_leads"])),
        run_config={"ops": {"enterprise_model": {"config": {"rebuild_unchanged": True}}}},
        definitions=definitions,
        DBT_LOG_LEVEL_FILE="debug",  # dbt's parse lines (read by the run's dbt, not by the definitions)
    )
    assert one_model.success and (case.settings.dbt_runs_dir / one_model.run_id).exists()
    dbt_log = (case.settings.dbt_runs_dir / one_model.run_id / "dbt.log").read_text()
    assert "Unable to do partial parsing" not in dbt_log  # the run before left its parse for this one
    assert "Partial parsing enabled" in dbt_log
    with duckdb.connect(str(case.settings.build_db), read_only=True) as conn:
        assert conn.execute("select count(*) from pipeline.dbt_build").fetchone() == (0,)


def test_a_publish_made_from_unchanged_inputs_is_not_written_again(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Analysts keep the file they have while its build, quarantine, manifest, policy and pseudonym key are
    the same; any of them changing, a build the warehouse cannot vouch for, or a lost swap publishes again."""
    import dataops.publish.analyst_warehouse
    from dataops.governance.metadata import load_manifest
    from dataops.governance.policy import POLICY_PATH
    from dataops.publish.analyst_warehouse import publish
    from dataops.transform.build_stamp import forget_build

    case = copy_of(published, tmp_path)
    settings = case.settings
    window = (case.late_day - dt.timedelta(days=1), case.late_day - dt.timedelta(days=1))
    (last_id,) = analyst(case, "select publish_id from publish.publish_log")[0]

    def publishes(**options: bool) -> bool:
        """One publish; True when it wrote a new analyst file, and then it must be a new publish."""
        nonlocal last_id
        before = settings.analytics_db.stat().st_ino if settings.analytics_db.exists() else None
        report = publish(settings, window, run_id="test", **options)
        wrote = not report.unchanged
        assert (settings.analytics_db.stat().st_ino != before) == wrote
        assert (report.publish_id != last_id) == wrote
        newest = analyst(case, "select max_by(publish_id, published_at) from publish.publish_log")
        assert newest == [(report.publish_id,)]
        last_id = report.publish_id
        return wrote

    assert not publishes()  # the run's own publish, from the same build
    assert publishes(republish_unchanged=True)
    assert not publishes()

    key_file = tmp_path / "pseudonym.key"  # rotated in a copy: the session's key stays as it was
    shutil.copy(settings.pseudonym_key_file, key_file)
    monkeypatch.setenv("DATAOPS_PSEUDONYM_KEY_FILE", str(key_file))
    assert not publishes()
    rotate_key(settings)
    assert publishes()
    assert not publishes()

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_PATH.read_text() + "\n# reviewed\n")
    monkeypatch.setenv("DATAOPS_POLICY", str(policy))
    assert publishes()

    with duckdb.connect(str(settings.build_db)) as conn:  # an orphan released by a later extraction
        held = conn.execute(
            "select table_name from duckdb_tables() where schema_name = 'quarantine' and estimated_size > 0 limit 1"
        ).fetchone()
        assert held is not None
        conn.execute(f"delete from quarantine.{held[0]} where rowid = (select min(rowid) from quarantine.{held[0]})")
    assert publishes()

    manifest = load_manifest()
    fct_leads = next(n for n in manifest["nodes"].values() if n["unique_id"] == "model.dataops.fct_leads")
    fct_leads["columns"]["company_name"].setdefault("tags", []).append("pii")  # newly declared personal data
    monkeypatch.setattr(dataops.publish.analyst_warehouse, "load_manifest", lambda *_: manifest)
    assert publishes()
    assert not publishes()

    older = tmp_path / "older.duckdb"  # the analyst file of a publish that is not the last one recorded
    shutil.copy(settings.analytics_db, older)
    older_id = last_id
    assert publishes(republish_unchanged=True)
    os.replace(older, settings.analytics_db)  # the history analysts have is the truth: the later one goes
    last_id = older_id
    assert not publishes()  # ... and analysts have a publish made from these inputs
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        recorded = conn.execute("select publish_id from publish.publish_log order by all").fetchall()
    assert recorded == analyst(case, "select publish_id from publish.publish_log order by all")

    settings.restricted_db.unlink()
    assert publishes()
    assert settings.restricted_db.exists()

    with duckdb.connect(str(settings.build_db)) as conn:  # dbt run by hand: the warehouse cannot say what
        forget_build(conn)  # its marts were built from
    assert publishes()
    assert publishes()


def test_the_quarantine_summary_counts_each_held_row_once(published: Published, tmp_path: Path) -> None:
    """A record quarantined twice (two deliveries of the same bad row), or for two reasons, is two rows in
    the count and each reason once, sorted: the counts analysts see equal the rows held."""
    from dataops.publish.analyst_warehouse import publish

    case = copy_of(published, tmp_path)
    with duckdb.connect(str(case.settings.build_db)) as conn:
        table = conn.execute(
            "select table_name from duckdb_tables() where schema_name = 'quarantine' and estimated_size > 0 limit 1"
        ).fetchone()[0]
        conn.execute(f"""
            insert into quarantine.{table} by name
            select * replace (list_append(_reasons, 'zz_second: a second reason') as _reasons)
            from quarantine.{table} limit 1
        """)
        names = conn.execute("select table_name from duckdb_tables() where schema_name = 'quarantine'").fetchall()
        held = {
            name.replace("__", "."): conn.execute(f"select count(*) from quarantine.{name}").fetchone()[0]
            for (name,) in names
        }
    day = case.late_day - dt.timedelta(days=1)
    publish(case.settings, (day, day))

    rows_ = analyst(case, "select dataset, rows, reasons from publish.quarantine_summary")
    summary = {name: (rows, reasons) for name, rows, reasons in rows_}
    assert {name: rows for name, (rows, _) in summary.items()} == held
    reasons = summary[table.replace("__", ".")][1].split(", ")
    assert reasons == sorted(set(reasons)) and reasons[-1] == "zz_second"


def _unshare_works() -> bool:
    """Whether this machine lets a process make its own mount namespace (to mount a small tmpfs)."""
    probe = ["unshare", "--user", "--map-root-user", "--mount", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.reliability
def test_a_full_disk_during_publish_leaves_no_trace_and_the_next_publish_is_right(
    published: Published, late_run: LateRun, tmp_path: Path
) -> None:
    """The disk fills while the analyst file is written aside: analysts keep their file and its history (no
    entry for a publish they never saw), nothing is left behind, and once there is room again the next
    publish reports the changes and the restatement a publish without the incident reports."""
    from dataops.core.settings import PROJECT_ROOT
    from dataops.publish.analyst_warehouse import publish

    case = built_not_published(published, late_run, tmp_path / "case")  # only a publish is paid for here
    (published_id,) = analyst(published, "select publish_id from publish.publish_log")[0]
    day = case.late_day
    clean = copy_of(case, tmp_path / "clean")
    expected = publish(clean.settings, (day, day), run_id="clean")
    room = case.settings.analytics_db.stat().st_size // 3  # a third of the file it will write
    mode = "tmpfs" if _unshare_works() else "fsize"
    command = [sys.executable, "-m", "tests.publish.full_disk", mode, str(case.root), str(day), str(room)]
    if mode == "tmpfs":
        command = ["unshare", "--user", "--map-root-user", "--mount", *command]
    child = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=900, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.splitlines()[-1])

    assert result["before"]["recorded"] == result["before"]["seen"] == [published_id]  # the day before's publish
    assert ("No space left on device" if mode == "tmpfs" else "File too large") in result["error"]
    assert result["after_failure"] == result["before"]  # history, the analyst file and the folder as they were
    assert (
        result["after"]["recorded"]
        == result["after"]["seen"]
        == sorted([*result["before"]["seen"], result["published"]])
    )
    assert not [name for name in result["after"]["files"] if name.startswith(".")]
    assert (result["changed"], result["restated"]) == (expected.changed_values, expected.restatements)
    assert expected.restatements == 1 and expected.changed_values > 1
    with duckdb.connect(str(clean.settings.analytics_db), read_only=True) as conn:
        rows = conn.execute("select date_day, kpi_name, value, is_final from kpis.kpi_daily order by all").fetchall()
    assert result["kpis"] == [[str(v) for v in row] for row in rows]


def test_a_publish_starts_by_removing_leftovers_and_taking_over_what_analysts_saw(
    published: Published, tmp_path: Path
) -> None:
    """A publish killed after its swap but before its commit left analysts a publish the build warehouse
    does not record; one killed while writing left its half-written files. The next publish repairs both."""
    from dataops.publish.analyst_warehouse import publish

    case = copy_of(published, tmp_path)
    settings = case.settings
    (seen,) = analyst(case, "select publish_id from publish.publish_log")[0]
    with duckdb.connect(str(settings.build_db)) as conn:
        for table in ("kpi_history", "kpi_restatements", "publish_log"):
            conn.execute(f"delete from publish.{table} where publish_id = ?", [seen])
    leftovers = [
        settings.warehouse_dir / f".analytics-{'0' * 16}.duckdb",
        settings.warehouse_dir / ".restricted-x.duckdb",
    ]
    for path in [*leftovers, leftovers[0].with_name(leftovers[0].name + ".wal")]:
        path.write_bytes(b"half written")
    day = case.late_day - dt.timedelta(days=1)
    report = publish(settings, (day, day), run_id="next")
    assert report.unchanged and report.publish_id == seen  # analysts have this build: taken over, not redone
    assert not [p.name for p in settings.warehouse_dir.iterdir() if p.name.startswith(".")]
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        recorded = conn.execute("select count(*), count(distinct publish_id) from publish.kpi_history").fetchone()
    assert recorded == analyst(case, "select count(*), count(distinct publish_id) from publish.kpi_history")[0]


def test_a_publish_rewrites_only_the_datasets_that_changed(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish starts from a copy of the file analysts hold and writes anew only the datasets whose published
    form changed mostly; in the others it deletes and inserts the rows that changed (a personal-data table's
    found in clear, when the restricted file holds the same publish: decision 0068). The file analysts hold
    is not written, the result equals a publish written from scratch and stays in the storage version
    analysts' clients read. The catalog's last modified time moves for the datasets changed and no other (their
    fingerprints are read from the digests the files keep, not by hashing every dataset again)."""
    import dataops.publish.analyst_warehouse
    from dataops.core.compatibility import STORAGE_VERSION
    from dataops.publish.analyst_warehouse import publish
    from tests.pipeline import tables

    case = copy_of(published, tmp_path / "case")
    settings = case.settings
    window = (case.late_day - dt.timedelta(days=1), case.late_day - dt.timedelta(days=1))
    held = tmp_path / "held.duckdb"
    os.link(settings.analytics_db, held)  # the file an analyst has open
    before = digest(held)
    with duckdb.connect(str(settings.build_db)) as conn:  # one mart changes whole, two by a row
        conn.execute("update marts.dim_products set product_name = product_name || ' (renamed)'")
        paid = "select * from marts.fct_payments order by payment_id limit 1"
        months = conn.execute(  # a payment's month (its first date column), and all months of payments
            f"select strftime(payment_date, '%Y-%m'), (select count(distinct date_trunc('month', payment_date)) "
            f"from marts.fct_payments) from ({paid})"
        ).fetchone()
        conn.execute(f"insert into marts.fct_payments {paid}")  # a duplicate
        conn.execute("delete from marts.fct_leads where lead_id = (select max(lead_id) from marts.fct_leads)")
        modified = dict(conn.execute("select dataset, last_modified_at from governance.dataset_history").fetchall())

    hashed: list[str] = []  # the rows whose digests the publish computes: the held files keep theirs (0078)
    spy = dataops.publish.analyst_warehouse.digests
    monkeypatch.setattr(
        dataops.publish.analyst_warehouse, "digests", lambda conn, rows, *a: hashed.append(rows) or spy(conn, rows, *a)
    )
    report = publish(settings, window, run_id="test", republish_unchanged=True)
    assert report.rewritten == ["marts.dim_products"]
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:  # the catalog's last modified times
        now = dict(conn.execute("select dataset, last_modified_at from governance.dataset_history").fetchall())
    assert {name for name in now if now[name] != modified.get(name)} == {
        "marts.dim_products",
        "marts.fct_payments",
        "marts.fct_leads",
    }
    assert {rows for rows in hashed if not rows.startswith("(")} == {"analytics.marts.dim_products"}  # written anew
    assert all(kept == fresh for kept, fresh in map(kept_and_fresh, (settings.analytics_db, settings.restricted_db)))
    assert report.updated == {"marts.fct_leads": (1, 0), "marts.fct_payments": (1, 2)}
    # rows are compared one by one only in the months whose digest moved (decision 0071)
    assert months is not None and months[1] > 1
    assert report.compared["marts.fct_payments"] == [months[0]]
    assert report.compared["marts.fct_invoices"] == [] and report.compared["kpis.kpi_daily"] == []
    assert digest(held) == before
    last = tmp_path / "last.duckdb"
    shutil.copyfile(settings.analytics_db, last)
    with duckdb.connect(str(settings.build_db)) as conn:  # a lead changes
        conn.execute(
            "update marts.fct_leads set current_score = -1 where lead_id = (select min(lead_id) from marts.fct_leads)"
        )
    changed = publish(settings, window, run_id="test", republish_unchanged=True)
    assert changed.updated == {"marts.fct_leads": (1, 1)}
    # Killed between the two swaps: the restricted file holds that publish, analysts the one before. The lead's
    # change is not in the restricted file's changes any more, and must still reach the analyst file.
    os.replace(last, settings.analytics_db)
    again = publish(settings, window, run_id="test", republish_unchanged=True)
    assert again.updated == {"marts.fct_leads": (1, 1)}
    assert all(kept == fresh for kept, fresh in map(kept_and_fresh, (settings.analytics_db, settings.restricted_db)))
    renamed = analyst(case, "select count(*) from marts.dim_products where product_name like '% (renamed)'")
    assert renamed == [(report.tables["marts.dim_products"],)] and renamed[0][0] > 0
    with duckdb.connect() as conn:
        conn.execute(f"attach '{settings.analytics_db}' as analytics (read_only)")
        version = conn.execute(
            "select tags['storage_version'] from duckdb_databases() where database_name = 'analytics'"
        )
        assert version.fetchone() == (f"{STORAGE_VERSION}+",)
    published_schemas = ("marts", "kpis", "reference")
    kept = {path: tables(path, published_schemas) for path in (settings.analytics_db, settings.restricted_db)}

    # The same publish from empty files: held files whose free blocks pass the share are not reused (0071).
    monkeypatch.setattr(dataops.publish.analyst_warehouse, "COMPACT_ABOVE", -1.0)
    fresh = publish(settings, window, run_id="test", republish_unchanged=True)
    assert fresh.rewritten == sorted(fresh.tables) and len(fresh.rewritten) > 1 and not fresh.updated
    assert tables(settings.analytics_db, published_schemas) == kept[settings.analytics_db]
    assert tables(settings.restricted_db, published_schemas) == kept[settings.restricted_db]
    assert tables(settings.restricted_db, ("publish",)) == {"publish.written_by": [(fresh.publish_id,)]}
    catalog = analyst(case, "select count(*) from catalog.datasets")
    assert catalog[0][0] >= len(fresh.tables)


def test_a_publish_trusts_the_kept_digests_only_while_they_describe_the_held_files(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file keeps its tables' digests, so that a publish hashes only the build's side (decision 0078). A
    kept digest stands for the held table only under its columns and DuckDB version and at its row count: a
    file changed behind the publish's back, kept digests of other columns or another version, or none at
    all, and the publish hashes the held side and still publishes the build. A publish killed before its
    swap leaves each file with digests of what it holds."""
    import dataops.publish.analyst_warehouse
    from dataops.publish.analyst_warehouse import publish
    from tests.pipeline import tables

    case = copy_of(published, tmp_path / "case")
    settings = case.settings
    window = (case.late_day - dt.timedelta(days=1), case.late_day - dt.timedelta(days=1))
    first = "{0} = (select min({0}) from marts.{1})"
    kept = "update pipeline.month_digests set {0} where dataset = 'marts.{1}'"
    tamper(
        settings.analytics_db,
        [  # in place (the row count kept) under digests of another version, or of other columns; a row deleted
            f"update marts.fct_payments set currency_code = 'XXX' where {first.format('payment_id', 'fct_payments')}",
            kept.format("engine = '0.0'", "fct_payments"),
            f"update marts.dim_customers set customer_name = 'x' where {first.format('customer_id', 'dim_customers')}",
            kept.format("columns = '[]'", "dim_customers"),
            f"delete from marts.fct_invoices where {first.format('invoice_id', 'fct_invoices')}",
        ],
    )
    tamper(settings.restricted_db, ["drop table pipeline.month_digests", "delete from marts.fct_gl_entries"])

    report = publish(settings, window, run_id="test", republish_unchanged=True)

    assert report.updated["marts.fct_payments"] == (1, 1) and report.updated["marts.fct_invoices"] == (0, 1)
    assert report.updated["marts.dim_customers"] == (1, 1)
    files = (settings.analytics_db, settings.restricted_db)
    assert all(kept == fresh for kept, fresh in map(kept_and_fresh, files))
    schemas = ("marts", "kpis", "reference")
    published_tables = {path: tables(path, schemas) for path in files}

    held = digest(settings.analytics_db)
    swap = os.replace

    def killed(source: Path, target: Path) -> None:  # after the restricted file's swap, before the analyst file's
        if Path(target) == settings.analytics_db:
            raise KeyboardInterrupt
        swap(source, target)

    monkeypatch.setattr(dataops.publish.analyst_warehouse.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        publish(settings, window, run_id="test", republish_unchanged=True)
    monkeypatch.undo()
    assert digest(settings.analytics_db) == held
    assert all(kept == fresh for kept, fresh in map(kept_and_fresh, files))

    # The same publish from empty files (held files past the share of free blocks are not reused: 0071).
    monkeypatch.setattr(dataops.publish.analyst_warehouse, "COMPACT_ABOVE", -1.0)
    fresh = publish(settings, window, run_id="test", republish_unchanged=True)
    assert fresh.rewritten == sorted(fresh.tables)
    assert {path: tables(path, schemas) for path in files} == published_tables


def test_a_rotated_key_starts_a_new_analyst_file_rather_than_reusing_the_last(
    published: Published, tmp_path: Path
) -> None:
    """Reusing the last file can keep the bytes of every table it replaces in the file's free blocks. After the
    pseudonym key rotates (as after a classification change), the publish starts a new file and writes every
    dataset, so no old pseudonym can be left for an analyst who reads the file raw."""
    from dataops.publish.analyst_warehouse import publish

    case = copy_of(published, tmp_path / "case")
    settings = case.settings
    window = (case.late_day - dt.timedelta(days=1), case.late_day - dt.timedelta(days=1))
    old = {str(i) for (i,) in analyst(case, "select lead_id from marts.fct_leads where lead_id is not null")}
    assert old and all(i.startswith("psd_") for i in old)
    rotate_key(settings)

    report = publish(settings, window, run_id="test", republish_unchanged=True)

    assert report.rewritten == sorted(report.tables)
    new = {str(i) for (i,) in analyst(case, "select lead_id from marts.fct_leads where lead_id is not null")}
    assert new and not new & old


def test_the_analyst_files_policy_changes_with_its_datasets_personal_columns_and_key() -> None:
    """A dataset restricted since, a column classified personal since, or a rotated key: each is another
    policy, so the last analyst file is not reused (its free blocks may hold what is no longer allowed)."""
    from dataops.publish.analyst_warehouse import file_policy

    base = file_policy(["marts.a", "marts.b"], {"marts.a": ["email"]}, b"key")
    assert base == file_policy(["marts.a", "marts.b"], {"marts.a": ["email"]}, b"key")
    assert base != file_policy(["marts.a"], {"marts.a": ["email"]}, b"key")
    assert base != file_policy(["marts.a", "marts.b"], {"marts.a": ["email", "name"]}, b"key")
    assert base != file_policy(["marts.a", "marts.b"], {"marts.a": ["email"]}, b"other key")
    assert b"key" not in base.encode()

"""Write, audit, publish: the analyst warehouse is rebuilt aside from the audited build warehouse and
swapped in atomically; KPI history and restatements are kept in the build warehouse and published with it.

Publishing runs only after every blocking check of the run passed (it is downstream of every checked
asset). It writes the build warehouse (history) and a new analyst file; analysts holding the old file
keep their snapshot, new connections see the new one. Nothing is ever written into a file analysts read.

A publish made from the same inputs as the one analysts already have is not written again
(docs/decisions/0021): the same build, quarantine, policy, domain notes, pseudonym key and code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.compatibility import STORAGE_VERSION, attach_published
from dataops.core.digest import (
    Digests,
    KeptMonths,
    digest,
    digests,
    files_digest,
    first_date_column,
    in_months,
    month_name,
    month_of,
    qualified,
    read_kept,
    table_digest,
    trusted,
    write_kept,
)
from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect, query_frame, scalar, transaction
from dataops.governance.catalog import (
    GOVERNANCE_DDL,
    build_catalog,
    dbt_constraints_by_dataset,
    dbt_tests_by_dataset,
    record_publication,
)
from dataops.governance.definition_versions import definition_files, definition_tables
from dataops.governance.metadata import DatasetMeta, load_manifest, published_datasets
from dataops.governance.policy import load_policy, policy_path
from dataops.governance.pseudonym import pseudonym_key, pseudonymise, register_pseudonym
from dataops.models.scores import DRIFT_TABLE, RISK_TABLE, dataset_meta, model_cards
from dataops.publish.definition_tables import definitions_in_catalog, write_definition_tables
from dataops.transform.build_stamp import built_from
from dataops.transform.runner import run_manifest
from registry import DOMAINS_DIR
from registry.loader import domain_owners, load_registry

PUBLISHED_SCHEMAS = ("marts", "kpis", "reference")
PUBLISH_DDL = """
create schema if not exists publish;
create table if not exists publish.kpi_history (
    publish_id varchar not null, kpi_name varchar not null, period date not null, grain varchar not null,
    value decimal(38, 2) not null, unit varchar not null, is_final boolean not null,
    published_at timestamp with time zone not null);
create table if not exists publish.kpi_restatements (
    publish_id varchar not null, kpi_name varchar not null, period date not null, grain varchar not null,
    old_value decimal(38, 2) not null, new_value decimal(38, 2) not null, was_final boolean not null,
    restated_at timestamp with time zone not null, cause varchar not null);
create table if not exists publish.publish_log (
    publish_id varchar not null, published_at timestamp with time zone not null, as_of_date date,
    window_start date, window_end date, run_id varchar, kpi_values_changed integer, restatements integer);
alter table publish.publish_log add column if not exists inputs varchar;
"""
# What a publish is made from, beyond the build: the code that writes it (a change to it republishes).
PUBLISH_CODE = (Path(__file__), *sorted((Path(__file__).parent / "governance").glob("*.py")))


@dataclass
class PublishReport:
    publish_id: str
    published_at: dt.datetime
    as_of: dt.date | None
    path: Path
    tables: dict[str, int] = field(default_factory=dict)
    changed_values: int = 0
    restatements: int = 0
    bytes: int = 0
    unchanged: bool = False  # nothing was written: analysts have this publish already
    published_by_run: str | None = None  # the run that wrote it, when ``unchanged``
    days: list[dt.date] = field(default_factory=list)  # the window's days and every day whose KPIs changed
    rewritten: list[str] = field(default_factory=list)  # datasets written anew (the rest kept from the last file)
    updated: dict[str, tuple[int, int]] = field(default_factory=dict)  # dataset -> (rows deleted, rows inserted)
    # dataset -> the months (of its first date column) whose rows were compared one by one (:func:`_update_rows`)
    compared: dict[str, list[str]] = field(default_factory=dict)


def model_datasets() -> dict[str, DatasetMeta]:
    """Published datasets written by the platform's models rather than dbt, with their catalog metadata."""
    return {RISK_TABLE: dataset_meta(domain_owners().get("customer", ""))}


def _published_tables(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
        f"and table_schema in ({', '.join('?' * len(PUBLISHED_SCHEMAS))}) order by 1, 2",
        list(PUBLISHED_SCHEMAS),
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


CANDIDATES = """
    select kpi.kpi_name, kpi.date_day as period, 'day' as grain, kpi.value, kpi.unit,
           coalesce(dates.month_close_date <= $as_of, false) as is_final
    from kpis.kpi_daily as kpi
    inner join marts.dim_dates as dates on dates.date_day = kpi.date_day
"""
LATEST = """
    select * from publish.kpi_history
    qualify row_number() over (partition by kpi_name, period, grain order by published_at desc) = 1
"""
# Late records loaded by the run that explain a restated value: what changed a past day.
CAUSES = """
    select 'revenue_usd' as kpi_name, posting_date as period,
           'journal line ' || journal_line_id || ' (posted ' || posting_date
           || ', delivered ' || loaded_partition || ')' as record
    from marts.fct_gl_entries
    where loaded_partition between $start and $end and posting_date < loaded_partition and is_revenue_account
    union all
    select 'cash_collected_usd', payment_date,
           'payment ' || payment_id || ' (paid ' || payment_date || ', delivered ' || loaded_partition || ')'
    from marts.fct_payments where loaded_partition between $start and $end
    union all
    select 'open_ar_usd', dates.date_day,
           'payment ' || payment_id || ' (paid ' || payment_date || ', delivered ' || loaded_partition || ')'
    from marts.fct_payments
    inner join marts.dim_dates as dates on dates.date_day >= payment_date and dates.date_day <= $end
    where loaded_partition between $start and $end
"""


def publish_inputs(
    conn: duckdb.DuckDBPyConnection, settings: Settings, manifest: dict[str, Any], datasets: dict[str, DatasetMeta]
) -> str | None:
    """A digest of everything a publish is made from, or None when the warehouse cannot say what its marts
    were built from (no complete build recorded: a build failed, stopped, ran a subset or ran by hand).

    Besides the build: the quarantine summary, the archive log, what publishing reads from dbt's
    ``manifest`` (each dataset's classification, personal-data columns, descriptions, tests and constraints:
    not the file, which every dbt command rewrites), the policy, the domain notes, the publishing code and
    the pseudonym key. The build is named by its inputs and its run, so a forced rebuild of the
    same inputs publishes again. The key enters as its own hash, mixed with the rest: the digest, which
    analysts can read in ``publish_log``, reveals nothing of it.
    """
    build = built_from(conn)
    if build is None:
        return None
    return digest(
        {
            "build": list(build),
            # what analysts see of the quarantine: a re-extraction quarantines the same rows with new lineage
            "quarantine": conn.execute(f"select * from ({_quarantine_summary_query(conn)}) order by all").fetchall(),
            "archive_log": table_digest(conn, "governance", "archive_log"),  # changes marts outside dbt
            # the churn scores are written by their own step, not dbt; the model cards go to the catalog
            "models": [table_digest(conn, *t.split(".")) for t in (RISK_TABLE, DRIFT_TABLE)],
            "model_cards": model_cards(settings.churn_models_dir).write_csv(),
            "datasets": {name: asdict(meta) for name, meta in datasets.items()},
            "tests": [dbt_tests_by_dataset(manifest, datasets), dbt_constraints_by_dataset(manifest, datasets)],
            "files": files_digest([policy_path(), *sorted(DOMAINS_DIR.glob("*.yaml")), *PUBLISH_CODE]),
            "definitions": files_digest(definition_files(settings), settings.definitions_dir),
            "key": hashlib.sha256(pseudonym_key(settings)).hexdigest(),
            "duckdb": duckdb.__version__,
            "storage_version": STORAGE_VERSION,  # a file analysts' clients cannot open is written again
        }
    )


def _already_published(conn: duckdb.DuckDBPyConnection, settings: Settings, inputs: str) -> PublishReport | None:
    """The last publish, if it was made from ``inputs``, the analyst file holds it and the restricted file
    (swapped in just before the analyst file) is there."""
    last = conn.execute(
        "select publish_id, published_at, as_of_date, run_id, inputs from publish.publish_log "
        "order by published_at desc limit 1"
    ).fetchone()
    if last is None or last[4] != inputs or not settings.restricted_db.exists():
        return None
    held = latest_publish(settings)
    if held is None or held["publish_id"] != last[0]:
        return None
    return PublishReport(
        str(last[0]),
        last[1],
        last[2],
        settings.analytics_db,
        bytes=settings.analytics_db.stat().st_size,
        unchanged=True,
        published_by_run=None if last[3] is None else str(last[3]),
    )


@dataclass(frozen=True)
class Publication:
    """One publish in the making: its id and time, and the two files it writes aside before swapping them in."""

    publish_id: str
    published_at: dt.datetime
    window: tuple[dt.date, dt.date] | None  # None: the whole history (resolved once the warehouse is open)
    run_id: str | None
    aside: Path
    restricted_aside: Path

    @classmethod
    def new(
        cls, settings: Settings, window: tuple[dt.date, dt.date] | None, run_id: str | None, now: dt.datetime | None
    ) -> Publication:
        publish_id = uuid.uuid4().hex[:16]
        return cls(
            publish_id,
            now or dt.datetime.now(dt.UTC),
            window,
            run_id,
            _aside(settings.analytics_db, publish_id),
            _aside(settings.restricted_db, publish_id),
        )


def _aside(target: Path, publish_id: str) -> Path:
    return target.with_name(f".{target.stem}-{publish_id}{target.suffix}")


def publish(
    settings: Settings,
    window: tuple[dt.date, dt.date] | None,
    run_id: str | None = None,
    limits: Limits | None = None,
    now: dt.datetime | None = None,
    republish_unchanged: bool = False,
    cause: str | None = None,
) -> PublishReport:
    """Write the analyst warehouse aside, with its KPI history, restatements and publish log, and swap it in.

    The history, restatements and log of a publish are committed in the build warehouse together with the
    swap (the transaction's last act is the swap), so they exist only for a publish analysts saw; a publish
    that fails or is killed leaves no trace and no file behind. When analysts already have a publish made
    from the same inputs (:func:`publish_inputs`), nothing is written and the report names that publish,
    unless ``republish_unchanged``. ``cause``, when given, is the cause of every restatement (a definition
    change: dataops/publish/definition_change.py). ``window`` is the build's business dates (None: the whole
    history).
    """
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(settings)  # of a publish that was killed, or failed on a full disk
    publication = Publication.new(settings, window, run_id, now)
    try:
        with connect(settings.build_db, limits=limits) as conn:
            conn.execute(PUBLISH_DDL + GOVERNANCE_DDL)
            reconcile_history(conn, settings)
            manifest = load_manifest(run_manifest(settings, run_id))
            declared = {**published_datasets(manifest), **model_datasets()}
            inputs = publish_inputs(conn, settings, manifest, declared)
            if inputs is not None and not republish_unchanged:
                held = _already_published(conn, settings, inputs)
                if held is not None:
                    return held
            if publication.window is None:
                publication = replace(publication, window=_whole_history(conn))
            report = _stage_history(conn, publication, inputs, settings.analytics_db, cause)
            datasets = _write_files(conn, settings, publication, report, manifest, declared)
            _record_and_swap(conn, settings, publication, datasets)
    except BaseException:
        for path in (publication.aside, publication.restricted_aside):
            _remove_database_file(path)
        raise
    report.bytes = settings.analytics_db.stat().st_size
    return report


def remove_leftovers(settings: Settings) -> list[Path]:
    """Delete the half-written files (and their WALs) of publishes that never swapped them in.

    Only a publish writes them, one at a time (the ``build_warehouse`` pool), so at the start of a publish,
    or of a run when no other run is in progress, every such file is a leftover.
    """
    removed = []
    for target in (settings.analytics_db, settings.restricted_db):
        for path in sorted(target.parent.glob(f".{target.stem}-*{target.suffix}*")):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _remove_database_file(path: Path) -> None:
    for part in (path, path.with_name(f"{path.name}.wal")):
        part.unlink(missing_ok=True)


HISTORY_TABLES = ("kpi_history", "kpi_restatements", "publish_log")


def reconcile_history(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Make the build warehouse's history what analysts saw: the analyst file is its truth.

    A publish commits its history with the swap; a process killed between the swap and the commit leaves a
    publish analysts saw but the build warehouse lacks, which is taken over from the file here. Entries of
    a publish analysts never saw (left by versions that recorded history before the swap) are removed.
    """
    if not settings.analytics_db.exists():
        return
    try:
        conn.execute(f"attach '{settings.analytics_db}' as seen (read_only)")
    except duckdb.Error:
        return  # unreadable: the next publish replaces it, with the build warehouse's history
    try:
        seen = {r[0] for r in conn.execute("select publish_id from seen.publish.publish_log").fetchall()}
        recorded = {r[0] for r in conn.execute("select publish_id from publish.publish_log").fetchall()}
        if seen == recorded:
            return
        with transaction(conn):
            for table in HISTORY_TABLES:
                conn.execute(
                    f"delete from publish.{table} where publish_id not in (select unnest($1::varchar[]))",
                    [sorted(seen)],
                )
                conn.execute(
                    f"insert into publish.{table} by name select * from seen.publish.{table} "
                    "where publish_id not in (select unnest($1::varchar[]))",
                    [sorted(recorded)],
                )
    finally:
        conn.execute("detach seen")


def _stage_history(
    conn: duckdb.DuckDBPyConnection, publication: Publication, inputs: str | None, target: Path, cause: str | None
) -> PublishReport:
    """This publish's history, restatements and log entry, in temp tables ``staged_<table>``: committed to
    ``publish.*`` only with the swap (:func:`_record_and_swap`)."""
    as_of = scalar(conn, "select max(date_day) from marts.dim_dates")
    assert publication.window is not None
    start, end = publication.window
    _find_changes(conn, as_of, (start, end))
    _stage_changes(conn, publication, cause)
    changed = scalar(conn, "select count(*) from changed")
    restated = scalar(conn, "select count(*) from staged_kpi_restatements")
    days = [
        d
        for (d,) in conn.execute(
            "select distinct period from changed where grain = 'day' union "
            "select date_day from marts.dim_dates where date_day between $start and least($end, $as_of) "
            "order by 1",
            {"start": start, "end": end, "as_of": as_of},
        ).fetchall()
    ]
    conn.execute("create or replace temp table staged_publish_log as select * from publish.publish_log where false")
    entry = (publication.publish_id, publication.published_at, as_of, start, end, publication.run_id)
    conn.execute(
        "insert into staged_publish_log (publish_id, published_at, as_of_date, window_start, window_end, run_id, "
        "kpi_values_changed, restatements, inputs) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [*entry, changed, restated, inputs],
    )
    for name in ("candidates", "latest", "changed", "causes"):
        conn.execute(f"drop table {name}")
    return PublishReport(
        publication.publish_id,
        publication.published_at,
        as_of,
        target,
        changed_values=changed,
        restatements=restated,
        days=days,
    )


def _whole_history(conn: duckdb.DuckDBPyConnection) -> tuple[dt.date, dt.date]:
    """The window of a build that names no days: every day the warehouse holds."""
    first, last = conn.execute("select min(date_day), max(date_day) from marts.dim_dates").fetchone() or (None, None)
    return first, last


def _find_changes(conn: duckdb.DuckDBPyConnection, as_of: object, window: tuple[dt.date, dt.date]) -> None:
    """Temp tables: the KPI values this publish would show (``candidates``), the last ones analysts saw
    (``latest``), those that differ (``changed``) and the records that caused them (``causes``)."""
    conn.execute(f"create or replace temp table candidates as {CANDIDATES}", {"as_of": as_of})
    conn.execute(f"create or replace temp table latest as {LATEST}")
    conn.execute("""
        create or replace temp table changed as
        select candidates.*, latest.value as old_value, latest.is_final as was_final
        from candidates
        left join latest using (kpi_name, period, grain)
        where latest.value is null or latest.value <> candidates.value
           or latest.is_final <> candidates.is_final
    """)
    conn.execute(f"create or replace temp table causes as {CAUSES}", {"start": window[0], "end": window[1]})


def _stage_changes(conn: duckdb.DuckDBPyConnection, publication: Publication, cause: str | None) -> None:
    """The changed values as history rows, and those that replace a value analysts saw as restatements
    (their cause: ``cause`` if given, else the records that changed them, else the window recomputed)."""
    assert publication.window is not None
    start, end = publication.window
    at = {"publish_id": publication.publish_id, "at": publication.published_at}
    conn.execute(
        """
        create or replace temp table staged_kpi_history as
        select $publish_id as publish_id, kpi_name, period, grain, value, unit, is_final, $at as published_at
        from changed
    """,
        at,
    )
    conn.execute(
        """
        create or replace temp table staged_kpi_restatements as
        select $publish_id as publish_id, changed.kpi_name, changed.period, changed.grain, changed.old_value,
               changed.value as new_value, changed.was_final, $at as restated_at,
               coalesce(
                   $cause,
                   (select string_agg(distinct record, '; ' order by record) from causes
                    where causes.kpi_name = changed.kpi_name and causes.period = changed.period),
                   'recomputed with the data delivered ' || $start || '..' || $end) as cause
        from changed
        where changed.old_value is not null and changed.old_value <> changed.value
    """,
        {**at, "start": start, "end": end, "cause": cause},
    )


def _write_files(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    publication: Publication,
    report: PublishReport,
    manifest: dict[str, Any],
    declared: dict[str, DatasetMeta],
) -> dict[str, str]:
    """The analyst file and the restricted file, written aside; returns the datasets published, with
    their content fingerprints (recorded with the swap)."""
    tables = {f"{s}.{t}" for s, t in _published_tables(conn)}
    datasets = {name: meta for name, meta in declared.items() if name in tables}
    restricted = {name for name, meta in datasets.items() if meta.classification == "restricted"}
    personal = {name: meta.pii_columns for name, meta in datasets.items() if meta.pii_columns}
    register_pseudonym(conn, settings)
    policy = file_policy(sorted(set(datasets) - restricted), personal, pseudonym_key(settings))
    changes = Changes(keep=set(personal), usable=_same_publish(conn, settings))
    clear = _write_restricted(
        conn, publication, settings.restricted_db, report.as_of, datasets, restricted | set(personal), changes
    )
    try:
        general = _write_aside(
            conn, publication, settings.analytics_db, policy, report, datasets, restricted, personal, changes
        )
    finally:
        for name in changes.kept:
            for side in ("deleted", "inserted"):
                conn.execute(f"drop table if exists {_clear_rows(name, side)}")
    fingerprint = _fingerprints(sorted(datasets), clear, general)
    with rolled_back(conn):  # the catalog shows this publish's times, recorded for good only with the swap
        record_publication(conn, fingerprint, publication.published_at)
        catalog, columns = build_catalog(
            conn, datasets, manifest, load_policy(), publication.published_at, report.as_of, restricted
        )
    definitions = definition_tables(settings)
    catalog, columns = definitions_in_catalog(catalog, columns, definitions, publication.published_at, report.as_of)
    conn.register("_catalog_datasets", catalog)
    conn.register("_catalog_columns", columns)
    conn.register("_catalog_model_cards", model_cards(settings.churn_models_dir))
    _write_catalog(conn, publication.aside)
    write_definition_tables(conn, publication.aside, definitions)
    return fingerprint


Written = dict[str, tuple[list[tuple[str, str]], Digests]]  # dataset -> the columns and digests a file keeps


def _fingerprints(datasets: list[str], clear: Written, general: Written) -> dict[str, str]:
    """Each dataset's content fingerprint for the catalog (its last modified time moves with it): its columns,
    row count and sum of row hashes, from the month digests the files keep of it, in clear where the restricted
    file holds it. Hashing every dataset again for it grew with history (docs/decisions/0091)."""
    found = {}
    for name in datasets:
        columns, months = clear.get(name) or general[name]
        shape = hashlib.md5(repr(columns).encode()).hexdigest()[:12]  # a column renamed with its values moves it
        found[name] = f"{sum(n for n, _ in months.values())}:{sum(total for _, total in months.values())}:{shape}"
    return found


@contextmanager
def rolled_back(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """A transaction that is always rolled back: to read what a write would make, without making it."""
    conn.execute("begin transaction")
    try:
        yield
    finally:
        conn.execute("rollback")


def _record_and_swap(
    conn: duckdb.DuckDBPyConnection, settings: Settings, publication: Publication, datasets: dict[str, str]
) -> None:
    """Commit the publish's history in the build warehouse in one transaction whose last act is the swap:
    a swap that fails records nothing; a kill after the swap is repaired by :func:`reconcile_history`."""
    with transaction(conn):
        for table in HISTORY_TABLES:
            conn.execute(f"insert into publish.{table} by name select * from staged_{table}")
        record_publication(conn, datasets, publication.published_at)
        os.chmod(publication.restricted_aside, 0o600)  # restricted data and personal data in clear: the owner only
        os.replace(publication.restricted_aside, settings.restricted_db)
        os.chmod(publication.aside, 0o444)  # analysts read it; nobody writes into a published file
        os.replace(publication.aside, settings.analytics_db)
    for table in HISTORY_TABLES:
        conn.execute(f"drop table staged_{table}")


def _select(schema: str, table: str, clear: bool, personal: dict[str, list[str]]) -> str:
    """The published form of a table: flash/final for KPIs, personal data pseudonymised unless ``clear``."""
    name = f"{schema}.{table}"
    if name == "kpis.kpi_daily":
        return (
            "select kpi.*, coalesce(dates.month_close_date <= $as_of, false) as is_final "
            "from kpis.kpi_daily as kpi inner join marts.dim_dates as dates using (date_day)"
        )
    if name == "kpis.kpi_usage_daily":  # provisional until the late-arrival horizon has passed (registry: usage)
        late_days = load_registry().usage.late_arrival_days
        return (
            f"select kpi.*, coalesce(kpi.date_day + {late_days} <= $as_of, false) as is_final "
            "from kpis.kpi_usage_daily as kpi"
        )
    if name == "kpis.kpi_monthly":
        return (
            "select kpi.*, coalesce((select min(month_close_date) from marts.dim_dates as d "
            "where d.month_start_date = kpi.month_start_date) <= $as_of, false) as is_final "
            "from kpis.kpi_monthly as kpi"
        )
    columns = personal.get(name)
    if columns and not clear:
        return _pseudonymised(name, columns)
    return f"select * from {name}"


def _pseudonymised(relation: str, columns: list[str]) -> str:
    replaced = ", ".join(f"pseudonym({c}) as {c}" for c in columns)
    return f"select * replace ({replaced}) from {relation}"


def _copy(
    conn: duckdb.DuckDBPyConnection,
    alias: str,
    tables: list[str],
    as_of: dt.date | None,
    clear: bool,
    personal: dict[str, list[str]],
    report: PublishReport | None = None,
    changes: Changes | None = None,
    kept: dict[str, KeptMonths] | None = None,
) -> Written:
    """Each table's published form into the attached file (a copy of the last publish, :func:`_attach_from_last`):
    a held table with the same columns gets only the rows that changed (:func:`_update_rows`), any other is
    written anew. ``changes``: the changed rows of the personal-data tables in clear, kept by the restricted
    file's pass and applied, pseudonymised, by the analyst file's (:class:`Changes`). ``kept``: the digests
    the held file kept of its tables, used where they still describe them (:func:`dataops.core.digest.trusted`);
    the digests of the tables written are kept in the file for the next publish (decision 0078), and returned."""
    held = _tables_of(conn, alias)
    found: Written = {}
    for name in tables:
        schema, table = name.split(".")
        select = _select(schema, table, clear, personal)
        params: dict[str, object] | None = {"as_of": as_of} if "$as_of" in select else None
        columns = _columns(conn, f"{alias}.{name}") if name in held else None
        wanted = _columns(conn, select, params)
        date = first_date_column(wanted)
        target = Target(f"{alias}.{name}", None if date is None else qualified(ROW, date))
        if columns is not None and columns == wanted:
            known = trusted(conn, kept or {}, name, target.table, columns)
            changed = _changed(conn, target, name, select, params, personal, changes, known)
            if changed is not None:
                if report is not None and changed.rows != (0, 0):
                    report.updated[name] = changed.rows
                if report is not None and changed.months is not None:
                    report.compared[name] = [month_name(month) for month in changed.months]
                found[name] = (wanted, _now_held(conn, target, changed.digests))
                continue
        conn.execute(f"create schema if not exists {alias}.{schema}")
        conn.execute(f"create or replace table {alias}.{name} as {select}", params)
        found[name] = (wanted, _now_held(conn, target, None))
        if report is not None:
            report.rewritten.append(name)
    write_kept(conn, alias, found)
    for name in sorted(held - set(tables)):  # a dataset no longer published, or no longer in this file
        conn.execute(f"drop table {alias}.{name}")
    if report is not None:
        for name in tables:
            report.tables[name] = scalar(conn, f"select count(*) from {alias}.{name}")
    return found


@dataclass
class Changes:
    """The changed rows in clear of the personal-data tables, so that the analyst file's pass pseudonymises
    those rows rather than every row of the table to find them. The restricted file's pass keeps them for
    ``keep`` (in the temp tables :func:`_clear_rows`) and lists the tables it kept them for in ``kept``; they
    apply only when both files hold the same publish (``usable``, :func:`_same_publish`)."""

    keep: set[str]
    kept: set[str] = field(default_factory=set)
    usable: bool = False


@dataclass(frozen=True)
class Target:
    """A held table to update, and its first date column (quoted, of :data:`ROW`), if any: its rows are then
    compared one by one only in the months whose digest differs."""

    table: str
    date_column: str | None


@dataclass(frozen=True)
class Update:
    rows: tuple[int, int]  # deleted, inserted
    months: list[int] | None = None  # the months (``month_of``) compared row by row; None: the whole table
    digests: Digests | None = None  # the table's digests after the update, when known without hashing it


def _now_held(conn: duckdb.DuckDBPyConnection, held: Target, known: Digests | None) -> Digests:
    """The held table's digests as written, to keep: ``known``, or hashed (a table written anew, or one whose
    digests the update could not tell)."""
    return known if known is not None else digests(conn, held.table, held.date_column, ROW)


def _changed(
    conn: duckdb.DuckDBPyConnection,
    held: Target,
    name: str,
    select: str,
    params: dict[str, object] | None,
    personal: dict[str, list[str]],
    changes: Changes | None,
    known: Digests | None = None,
) -> Update | None:
    """The held table updated row by row (None: nothing written, it is to be written anew). ``known``: the held
    table's digests, kept by the last publish (None: hashed here)."""
    if changes is None or name not in changes.keep:
        return _update_rows(conn, held, select, params, known=known)
    if not personal.get(name):  # the restricted file's pass: keep the rows in clear
        updated = _update_rows(conn, held, select, params, keep=name, known=known)
        if updated is not None:
            changes.kept.add(name)
        return updated
    if not changes.usable:
        return _update_rows(conn, held, select, params, known=known)
    if name not in changes.kept:
        return None  # rewritten in clear: most of its rows changed
    return _apply_clear_rows(conn, held, name, personal[name], known)


def _clear_rows(name: str, side: str) -> str:
    return f"_clear_{side}_{name.replace('.', '__')}"


def _apply_clear_rows(
    conn: duckdb.DuckDBPyConnection, held: Target, name: str, columns: list[str], known: Digests | None
) -> Update:
    """Delete the pseudonymised form of the rows deleted in clear and insert that of the rows inserted; the
    held rows hashed to find them are those of the deleted rows' months only (a date is never pseudonymised:
    a pseudonymised column is text, so the date column is the same in clear). The held table's ``known``
    digests, less those of the rows deleted and plus those inserted, are its digests after (a sum)."""
    deleted, inserted = (_pseudonymised(_clear_rows(name, side), columns) for side in ("deleted", "inserted"))
    after = None
    if known is not None:
        minus = digests(conn, f"({deleted})", held.date_column, ROW)
        plus = digests(conn, f"({inserted})", held.date_column, ROW)
        after = _moved(known, minus, plus)
    within = "true"
    if held.date_column is not None:
        months = conn.execute(
            f"select distinct {month_of(held.date_column)} from {_clear_rows(name, 'deleted')} as {ROW}"
        ).fetchall()
        within = in_months(held.date_column, [int(month) for (month,) in months])
    gone = conn.execute(
        f"delete from {held.table} as {ROW} where {within} "
        f"and hash({ROW}) in (select hash({ROW}) from ({deleted}) as {ROW})"
    ).fetchone()
    added = conn.execute(f"insert into {held.table} {inserted}").fetchone()
    rows = (int(gone[0]) if gone else 0, int(added[0]) if added else 0)
    if after is not None and rows[0] != sum(n for n, _ in minus.values()):
        after = None  # not the rows the digests were taken of: hash the table instead
    return Update(rows, digests=after)


def _moved(known: Digests, minus: Digests, plus: Digests) -> Digests:
    """``known`` less ``minus`` plus ``plus``, month by month; months left without rows are dropped."""
    after = dict(known)
    for sign, change in ((-1, minus), (1, plus)):
        for month, (n, total) in change.items():
            was = after.get(month, (0, 0))
            after[month] = (was[0] + sign * n, was[1] + sign * total)
    return {month: found for month, found in after.items() if found[0]}


def _tables_of(conn: duckdb.DuckDBPyConnection, alias: str) -> set[str]:
    rows = conn.execute(
        "select schema_name || '.' || table_name from duckdb_tables() where database_name = ?", [alias]
    ).fetchall()
    return {str(name) for (name,) in rows}


def _columns(
    conn: duckdb.DuckDBPyConnection, relation: str, params: dict[str, object] | None = None
) -> list[tuple[str, str]]:
    """Names, types and order (not-null constraints are not published)."""
    rows = conn.execute(f"select column_name, column_type from (describe {relation})", params).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


# Rows are told apart by the hash of the whole row, as :func:`dataops.core.digest.table_digest` compares tables;
# the alias is one no published column is named (a column named like the alias would be hashed instead).
ROW = "_published_row"
# Above this share of the held rows, deleting and inserting costs more than writing the table anew.
UPDATE_AT_MOST = 0.25


def _update_rows(
    conn: duckdb.DuckDBPyConnection,
    held: Target,
    select: str,
    params: dict[str, object] | None,
    keep: str | None = None,
    known: Digests | None = None,
) -> Update | None:
    """Make the held table hold the select's rows by writing only where they differ, so that a day's publish
    writes the day's rows rather than the table (decision 0068): for each row hash held a different number
    of times than the select yields it, the held rows are deleted and the select's inserted; with a date
    column, only in the months whose count or sum of row hashes differ (:func:`_changed_months`, decision
    0071). Returns the rows deleted and inserted, or None, having written nothing, when that is more than
    :data:`UPDATE_AT_MOST` of the held rows (then writing the table anew costs less). ``keep``: the dataset
    whose deleted and inserted rows are kept in temp tables (:func:`_clear_rows`) for the analyst file's
    pass. ``known``: the held table's digests, kept by the last publish (None: hashed here)."""
    wanted, months = _changed_months(conn, held, select, params, known)
    if not months and not keep:  # no month differs (a table without a date column: its digest is the same)
        return Update((0, 0), None if held.date_column is None else [], wanted)
    within = in_months(held.date_column, months) if held.date_column is not None else "true" if months else "false"
    wanted_rows = f"select * from ({select}) as {ROW} where {within}"
    held_rows = f"select * from {held.table} as {ROW} where {within}"
    conn.execute(
        f"""
        create or replace temp table _changed_rows as
        select h, coalesce(wanted.n, 0) as wanted, coalesce(held.n, 0) as held
        from (select hash({ROW}) as h, count(*) as n from ({wanted_rows}) as {ROW} group by h) as wanted
        full join (select hash({ROW}) as h, count(*) as n from ({held_rows}) as {ROW} group by h) as held using (h)
        where wanted.n is distinct from held.n
        """,
        params,
    )
    inserted_rows = _clear_rows(keep, "inserted") if keep else "_changed_inserted"
    try:
        counts = conn.execute("select coalesce(sum(held), 0), coalesce(sum(wanted), 0) from _changed_rows").fetchone()
        deleted, inserted = (int(counts[0]), int(counts[1])) if counts else (0, 0)
        if deleted + inserted > UPDATE_AT_MOST * scalar(conn, f"select count(*) from {held.table}"):
            return None
        if keep:  # the rows as they were, before they are deleted
            conn.execute(
                f"create or replace temp table {_clear_rows(keep, 'deleted')} as select * from ({held_rows}) as {ROW} "
                f"where hash({ROW}) in (select h from _changed_rows where held > 0)"
            )
        conn.execute(  # the select evaluated once more, on its changed rows only
            f"create or replace temp table {inserted_rows} as select * from ({wanted_rows}) as {ROW} "
            f"where hash({ROW}) in (select h from _changed_rows where wanted > 0)",
            params,
        )
        if deleted:
            conn.execute(
                f"delete from {held.table} as {ROW} where {within} "
                f"and hash({ROW}) in (select h from _changed_rows where held > 0)"
            )
        conn.execute(f"insert into {held.table} select * from {inserted_rows}")
        return Update((deleted, inserted), None if held.date_column is None else months, wanted)
    finally:
        conn.execute("drop table _changed_rows")
        conn.execute("drop table if exists _changed_inserted")


def _changed_months(
    conn: duckdb.DuckDBPyConnection,
    held: Target,
    select: str,
    params: dict[str, object] | None,
    known: Digests | None,
) -> tuple[Digests, list[int]]:
    """The select's digests, and the months (:func:`dataops.core.digest.month_of`; a table without a date
    column is one, :data:`dataops.core.digest.WHOLE`) whose row count or sum of row hashes differs between the
    select and the held table, as :func:`dataops.core.digest.table_digest` tells tables apart. Summing a hash
    per month needs no table of every row's hash, which grouping by hash builds. The held side's are the
    ``known`` ones kept by the last publish when they still describe the table (decision 0078), else hashed."""
    wanted = digests(conn, f"({select})", held.date_column, ROW, params)
    kept = known if known is not None else digests(conn, held.table, held.date_column, ROW)
    return wanted, sorted(month for month in wanted.keys() | kept.keys() if wanted.get(month) != kept.get(month))


def file_policy(tables: list[str], personal: dict[str, list[str]], key: bytes) -> str:
    """What the analyst file may hold: its datasets, their personal columns and the pseudonym key (as the
    pseudonym of a fixed probe, never the key). A file is reused only under the same policy (decision 0056)."""
    probe = pseudonymise(key, "dataops/file-policy")
    return digest({"tables": tables, "personal": {k: sorted(v) for k, v in sorted(personal.items())}, "key": probe})


def _held_policy(conn: duckdb.DuckDBPyConnection, alias: str) -> str | None:
    found = conn.execute(
        "select comment from duckdb_tables() where database_name = ? and schema_name = 'publish' and table_name = ?",
        [alias, HISTORY_TABLES[0]],
    ).fetchone()
    return str(found[0]) if found and found[0] else None


def _attach_from_last(
    conn: duckdb.DuckDBPyConnection, last: Path, aside: Path, alias: str, keep: set[str], policy: str | None = None
) -> dict[str, KeptMonths]:
    """Attach ``aside`` as ``alias``, starting from a copy of the file analysts hold (``last``) when it is in
    the storage version analysts' clients read and, given a ``policy``, was written under it: its unchanged
    datasets are kept, every other table (the catalog, history, definitions) is dropped to be written again.
    A file written under another policy is not reused: a dropped or replaced table's bytes can stay in the
    file's free blocks, so a dataset restricted since, a column pseudonymised since or a rotated key starts a
    new file, and so does a file whose free blocks pass :data:`COMPACT_ABOVE` (its size stays within about twice
    its data). The copy is aside, like a new file: the swap stays atomic, and the file analysts hold is only
    read. Returns the digests the reused copy keeps of its tables (decision 0078; none for a new file)."""
    if aside.exists():
        aside.unlink()
    if last.exists():
        shutil.copyfile(last, aside)
        os.chmod(aside, 0o600)
    try:
        conn.execute(attach_published(aside, alias))
    except duckdb.Error:  # unreadable: start from an empty file
        _remove_database_file(aside)
        conn.execute(attach_published(aside, alias))
    version = scalar(conn, "select tags['storage_version'] from duckdb_databases() where database_name = ?", [alias])
    stale = policy is not None and _held_policy(conn, alias) != policy
    if last.exists() and (str(version).rstrip("+") != STORAGE_VERSION or stale or _mostly_free(conn, alias)):
        conn.execute(f"detach {alias}")
        _remove_database_file(aside)
        conn.execute(attach_published(aside, alias))
    kept = read_kept(conn, alias)
    kept_schemas = {name.split(".")[0] for name in keep}
    for (schema,) in conn.execute(
        "select schema_name from duckdb_schemas() where database_name = ? and not internal", [alias]
    ).fetchall():
        if schema not in kept_schemas and schema != "main":
            conn.execute(f"drop schema {alias}.{schema} cascade")
    return kept


# A file reused publish after publish keeps the blocks its deleted rows freed (decision 0068 no longer rewrites a
# changed table); past this share of free blocks, the file is more than twice its data and is written anew.
COMPACT_ABOVE = 0.5


def _mostly_free(conn: duckdb.DuckDBPyConnection, alias: str) -> bool:
    """Whether the attached copy's free blocks pass :data:`COMPACT_ABOVE` of its blocks (decision 0071)."""
    found = conn.execute(
        "select free_blocks, total_blocks from pragma_database_size() where database_name = ?", [alias]
    ).fetchone()
    return bool(found and found[1] and found[0] > COMPACT_ABOVE * found[1])


def _write_aside(
    conn: duckdb.DuckDBPyConnection,
    publication: Publication,
    last: Path,
    policy: str,
    report: PublishReport,
    datasets: dict[str, DatasetMeta],
    restricted: set[str],
    personal: dict[str, list[str]],
    changes: Changes,
) -> Written:
    """The general analyst warehouse: every dataset but the restricted ones, personal data pseudonymised.
    Returns the digests it keeps of them."""
    tables = sorted(set(datasets) - restricted)
    kept = _attach_from_last(conn, last, publication.aside, "analytics", set(tables), policy)
    try:
        found = _copy(conn, "analytics", tables, report.as_of, False, personal, report, changes, kept)
        conn.execute("create schema analytics.publish")
        for table in HISTORY_TABLES:  # what analysts saw, and this publish, which they see with this file
            conn.execute(
                f"create table analytics.publish.{table} as "
                f"select * from publish.{table} union all by name select * from staged_{table}"
            )
        conn.execute(f"comment on table analytics.publish.{HISTORY_TABLES[0]} is '{policy}'")  # a hex digest
        _quarantine_summary(conn)
        conn.execute("checkpoint analytics")
    finally:
        conn.execute("detach analytics")
    return found


def _write_catalog(conn: duckdb.DuckDBPyConnection, aside: Path) -> None:
    conn.execute(attach_published(aside, "analytics"))
    try:
        conn.execute("create schema analytics.catalog")
        conn.execute("create table analytics.catalog.datasets as select * from _catalog_datasets")
        conn.execute("create table analytics.catalog.columns as select * from _catalog_columns")
        conn.execute("create table analytics.catalog.model_cards as select * from _catalog_model_cards")
        conn.execute(
            "create table analytics.catalog.archives as select dataset, period, rows, archived_at, "
            "restored_at from governance.archive_log"
        )
        conn.execute("checkpoint analytics")
    finally:
        conn.execute("detach analytics")
        conn.unregister("_catalog_datasets")
        conn.unregister("_catalog_columns")
        conn.unregister("_catalog_model_cards")


def _write_restricted(
    conn: duckdb.DuckDBPyConnection,
    publication: Publication,
    last: Path,
    as_of: dt.date | None,
    datasets: dict[str, DatasetMeta],
    names: set[str],
    changes: Changes,
) -> Written:
    """The restricted file: restricted datasets, and the personal-data datasets in clear (whose changed rows
    it keeps for the analyst file's pass), and the publish it belongs to. Returns the digests it keeps of them."""
    tables = sorted(names & set(datasets))
    kept = _attach_from_last(conn, last, publication.restricted_aside, "restricted", set(tables))
    try:
        found = _copy(conn, "restricted", tables, as_of, clear=True, personal={}, changes=changes, kept=kept)
        conn.execute("create schema if not exists restricted.publish")
        conn.execute(
            f"create or replace table restricted.publish.{PUBLISH_MARK} as select $1 as publish_id",
            [publication.publish_id],
        )
        conn.execute("checkpoint restricted")
    finally:
        conn.execute("detach restricted")
    return found


# The restricted file names its publish: the two files are swapped in one after the other, and a process
# killed between the two leaves them holding different publishes.
PUBLISH_MARK = "written_by"


def _same_publish(conn: duckdb.DuckDBPyConnection, settings: Settings) -> bool:
    """Whether the restricted file and the analyst file hold the same publish: then the analyst file's
    personal-data tables are the restricted file's, pseudonymised."""
    held = latest_publish(settings)
    if held is None or not settings.restricted_db.exists():
        return False
    try:
        conn.execute(f"attach '{settings.restricted_db}' as held_restricted (read_only)")
    except duckdb.Error:
        return False
    try:
        found = conn.execute(
            "select count(*) from duckdb_tables() where database_name = 'held_restricted' "
            "and schema_name = 'publish' and table_name = ?",
            [PUBLISH_MARK],
        ).fetchone()
        if not found or not found[0]:
            return False
        mark = conn.execute(f"select publish_id from held_restricted.publish.{PUBLISH_MARK}").fetchall()
        return mark == [(held["publish_id"],)]
    finally:
        conn.execute("detach held_restricted")


def _quarantine_summary(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"create table analytics.publish.quarantine_summary as {_quarantine_summary_query(conn)}")


def _quarantine_summary_query(conn: duckdb.DuckDBPyConnection) -> str:
    """How many rows each source table holds in quarantine, and why (counts only: never the rows)."""
    tables = [
        t
        for (t,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'quarantine' order by 1"
        ).fetchall()
    ]
    parts = [
        f"select '{t.replace('__', '.')}' as dataset, (select count(*) from quarantine.{t}) as rows, "
        "coalesce((select string_agg(distinct reason, ', ' order by reason) from "
        f"(select split_part(unnest(_reasons), ':', 1) as reason from quarantine.{t})), '') as reasons"
        for t in tables
    ]
    return " union all ".join(parts) if parts else "select '' as dataset, 0 as rows, '' as reasons where false"


def latest_publish(settings: Settings) -> dict[str, object] | None:
    """The last publish as the analyst warehouse records it (None before the first)."""
    if not settings.analytics_db.exists():
        return None
    with connect(settings.analytics_db, read_only=True) as conn:
        frame = query_frame(conn, "select * from publish.publish_log order by published_at desc limit 1")
    return frame.row(0, named=True) if frame.height else None

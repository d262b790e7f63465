"""Load a contract-checked batch into the warehouse's ``raw`` and ``quarantine`` schemas.

One explicit transaction per table and partition range: the range's old rows are deleted and the new ones
inserted together, so a re-run replaces exactly its partitions and a failure leaves the warehouse as it was.
The new rows arrive block by block of days, each staged (and committed) in a table of the load's own first,
so that memory holds a block and not the range (docs/decisions/0064). References to a parent table of the same
system are checked here (a relational rule): a row whose parent is not loaded is quarantined as an orphan, and
released into ``raw`` by a later load once its parent arrives (a parent updated after the child's day lands in a
later partition).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import duckdb
import polars as pl

from dataops.core.warehouse import query_frame, table_exists, transaction
from dataops.ingest import raw_digests
from dataops.ingest.contract import QUARANTINE_SCHEMA, ContractResult
from dataops.ingest.ledger import record_release
from quality.contracts import CONTRACTS, Contract

ORPHAN = "orphan_fk"


class QuarantineRateExceeded(RuntimeError):
    """Too many of a partition's rows failed their contract: something is wrong upstream."""


@dataclass
class LoadResult:
    loaded: int = 0
    quarantined: int = 0
    orphans: int = 0
    released: int = 0
    per_partition: dict[dt.date, tuple[int, int]] = field(default_factory=dict)  # day -> (rows, quarantined)


def raw_name(contract: Contract) -> str:
    return f"raw.{_table(contract)}"


def _table(contract: Contract) -> str:
    """The contract's table in the ``raw`` schema."""
    return f"{contract.system}__{contract.table}"


def quarantine_name(contract: Contract) -> str:
    return f"quarantine.{contract.system}__{contract.table}"


def _ensure_tables(conn: duckdb.DuckDBPyConnection, contract: Contract, valid: pl.DataFrame) -> None:
    """The table's raw and quarantine tables, if it has none yet (a raw table's kept digest with it: call it
    in a transaction)."""
    conn.execute("create schema if not exists raw")
    conn.execute("create schema if not exists quarantine")
    if not table_exists(conn, "raw", _table(contract)):
        raw_cols = valid.drop("_payload").clear()
        conn.register("_raw_shape", raw_cols)
        conn.execute(f"create table {raw_name(contract)} as select * from _raw_shape")
        conn.unregister("_raw_shape")
        raw_digests.seed_empty(conn, _table(contract))
    conn.register("_q_shape", pl.DataFrame(schema=QUARANTINE_SCHEMA))
    conn.execute(
        f"create table if not exists {quarantine_name(contract)} as select *, "
        f"now()::timestamptz as _quarantined_at from _q_shape"
    )
    conn.unregister("_q_shape")


def _orphans(conn: duckdb.DuckDBPyConnection, contract: Contract, frame: str) -> dict[int, list[str]]:
    """Rows of a registered frame (with ``_i``) whose reference has no parent in raw.

    The parents are looked up by the frame's own references (the parent table scanned once against them), not
    the frame's references against every parent: the lookup's memory and time follow the frame, not the
    table's history. The parents found are never null, so ``not in`` is the plain anti-join."""
    found: dict[int, list[str]] = {}
    for column, (parent, parent_col) in contract.references.items():
        parent_table = f"raw.{contract.system}__{parent}"
        if table_exists(conn, "raw", f"{contract.system}__{parent}"):
            parents = (
                f"select p.{parent_col} from {parent_table} p where p.{parent_col} in (select {column} from {frame})"
            )
            exists = f"b.{column} in ({parents})"
        else:
            exists = "false"
        rows = conn.execute(f"select _i from {frame} b where b.{column} is not null and not {exists}").fetchall()
        for (i,) in rows:
            found.setdefault(i, []).append(f"{ORPHAN}: {column} -> {contract.system}.{parent}.{parent_col}")
    return found


def _surely_orphaned(conn: duckdb.DuckDBPyConnection, contract: Contract) -> tuple[str, list[object]]:
    """A condition on a quarantined row (``q``) that holds when some reference of its payload still has no
    parent in raw, and its parameters.

    Sure only for a string reference to a string key, where the payload holds it as JSON text: a string column
    is read as it is, so that text is the reference. Any other reference, or payload value (absent, null, a
    number, a renamed column's), leaves the row to the full check, which reads it as its contract does. Never
    null: an absent key must not hide a row."""
    clauses: list[str] = []
    params: list[object] = []
    for column, (parent, parent_col) in contract.references.items():
        parent_contract = CONTRACTS.get(f"{contract.system}.{parent}")
        strings = parent_contract is not None and parent_contract.columns().get(parent_col) == pl.String
        if not strings or contract.columns().get(column) != pl.String:
            continue
        if not table_exists(conn, "raw", f"{contract.system}__{parent}"):
            clauses.append("json_type(q._payload, ?) is not distinct from 'VARCHAR'")
            params.append(f'$."{column}"')
            continue
        parent_table = f"raw.{contract.system}__{parent}"
        clauses.append(
            f"(json_type(q._payload, ?) is not distinct from 'VARCHAR' and not exists "
            f"(select 1 from {parent_table} p where p.{parent_col} = json_extract_string(q._payload, ?)))"
        )
        params += [f'$."{column}"', f'$."{column}"']
    return " or ".join(clauses) or "false", params


def load_range(
    conn: duckdb.DuckDBPyConnection,
    contract: Contract,
    start: dt.date,
    end: dt.date,
    results: Iterable[ContractResult],
    max_rate: float,
    min_quarantined: int,
    reread: Callable[[pl.DataFrame], ContractResult],
    record: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    staged: bool = True,
) -> LoadResult:
    """Replace partitions [start, end] of the table's raw and quarantine rows, in one transaction (with
    ``record``, which notes the load in the ledger, so the rows and the note land together).

    ``results`` are the window's blocks of days, checked by the contract: each is written to the load's own
    staging tables (committed, so DuckDB keeps it on disk, not in memory) before the next is read; the one
    transaction then moves the staged window into raw and quarantine. Memory holds one block, and raw holds
    the old window or the new one, never a part of it. A load that fails, or is killed, leaves raw as it was
    (and staging tables the next load of the table replaces). A window of one block (``staged`` false: a
    daily run's) goes straight into raw in that transaction: it holds one block in memory either way, and
    staging would cost five more commits, each a WAL sync (docs/testing.md)."""
    if not staged:
        return _load_one_block(conn, contract, (start, end), results, (max_rate, min_quarantined), reread, record)
    out = LoadResult()
    stage = _stage_tables(contract)
    try:
        for n, result in enumerate(results):
            if n == 0:
                with transaction(conn):
                    _ensure_tables(conn, contract, result.valid)
                conn.execute("create schema if not exists pipeline")
                conn.execute(f"create or replace table {stage[0]} as from {raw_name(contract)} limit 0")
                conn.execute(f"create or replace table {stage[1]} as from {quarantine_name(contract)} limit 0")
            _insert_block(conn, contract, stage, (start, end), result, (max_rate, min_quarantined), out)
        with transaction(conn):
            _replace_window(conn, contract, (start, end), stage)
            _finish(conn, contract, reread, record, out)
    finally:
        for table in stage:
            conn.execute(f"drop table if exists {table}")
    return out


def _load_one_block(
    conn: duckdb.DuckDBPyConnection,
    contract: Contract,
    window: tuple[dt.date, dt.date],
    results: Iterable[ContractResult],
    limits: tuple[float, int],
    reread: Callable[[pl.DataFrame], ContractResult],
    record: Callable[[duckdb.DuckDBPyConnection], None] | None,
) -> LoadResult:
    """The window's only block judged and written into raw and quarantine in the one transaction."""
    out = LoadResult()
    (result,) = results
    with transaction(conn):
        _ensure_tables(conn, contract, result.valid)
        keep, quarantine = _judge_block(conn, contract, window, result, limits, out)  # before the window goes
        _replace_window(conn, contract, window, None)
        conn.register("_keep", keep)
        raw_digests.insert_kept(conn, _table(contract), "_keep")
        conn.unregister("_keep")
        _insert_quarantined(conn, quarantine_name(contract), quarantine)
        _finish(conn, contract, reread, record, out)
        for table in _stage_tables(contract):  # a killed load's, in the same commit
            conn.execute(f"drop table if exists {table}")
    return out


def _stage_tables(contract: Contract) -> tuple[str, str]:
    """The tables a load in several blocks stages its raw and quarantined rows in (decision 0064)."""
    return (
        f"pipeline.load_raw__{contract.system}__{contract.table}",
        f"pipeline.load_quarantine__{contract.system}__{contract.table}",
    )


def _replace_window(
    conn: duckdb.DuckDBPyConnection, contract: Contract, window: tuple[dt.date, dt.date], stage: tuple[str, str] | None
) -> None:
    """Delete the window's raw and quarantine rows, and insert the staged ones (if staged); the raw table's
    kept digest follows (docs/decisions/0075)."""
    raw_digests.delete_kept(conn, _table(contract), "_partition between ? and ?", window)
    conn.execute(f"delete from {quarantine_name(contract)} where _partition between ? and ?", list(window))
    if stage is not None:
        raw_digests.insert_typed(conn, _table(contract), stage[0])
        conn.execute(f"insert into {quarantine_name(contract)} by name from {stage[1]}")


def _finish(
    conn: duckdb.DuckDBPyConnection,
    contract: Contract,
    reread: Callable[[pl.DataFrame], ContractResult],
    record: Callable[[duckdb.DuckDBPyConnection], None] | None,
    out: LoadResult,
) -> None:
    """Within the load's transaction, after its rows: release the orphans whose parents arrived, note the load."""
    if contract.references:
        out.released = _release_orphans(conn, contract, reread)
        out.loaded += out.released
    if record is not None:
        record(conn)


def _insert_block(
    conn: duckdb.DuckDBPyConnection,
    contract: Contract,
    stage: tuple[str, str],
    window: tuple[dt.date, dt.date],
    result: ContractResult,
    limits: tuple[float, int],
    out: LoadResult,
) -> None:
    """One block's rows into the staged raw rows, its failures and orphans into the staged quarantine."""
    keep, quarantine = _judge_block(conn, contract, window, result, limits, out)
    conn.register("_keep", keep)
    conn.execute(f"insert into {stage[0]} by name select * from _keep")
    conn.unregister("_keep")
    _insert_quarantined(conn, stage[1], quarantine)


def _judge_block(
    conn: duckdb.DuckDBPyConnection,
    contract: Contract,
    window: tuple[dt.date, dt.date],
    result: ContractResult,
    limits: tuple[float, int],
    out: LoadResult,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One block's rows to keep and to quarantine (its failures and its orphans), counted in ``out``; a
    partition past the quarantine rate fails the load."""
    valid = result.valid.with_row_index("_i")
    conn.register("_batch", valid)
    orphans = _orphans(conn, contract, "_batch") if contract.references else {}
    conn.unregister("_batch")
    orphan_rows = sorted(orphans)
    moved = valid.filter(pl.col("_i").is_in(orphan_rows))
    orphan_q = (
        moved.select(
            *[c for c in QUARANTINE_SCHEMA if c in moved.columns and c not in {"_reasons", "_key"}],
            _key=pl.concat_str([pl.col(k).cast(pl.String) for k in contract.key], separator=":"),
            _reasons=pl.Series([orphans[i] for i in orphan_rows], dtype=pl.List(pl.String)),
        )
        .select(list(QUARANTINE_SCHEMA))
        .cast(QUARANTINE_SCHEMA)
    )
    quarantine = pl.concat([result.quarantined, orphan_q])
    keep = valid.filter(~pl.col("_i").is_in(orphan_rows)).drop("_i", "_payload")
    # The rate counts rows that broke a row rule; orphans may only be waiting for their parent.
    _check_rates(
        contract,
        *window,
        pl.concat([keep.select("_partition"), orphan_q.select("_partition")]),
        result.quarantined,
        *limits,
        out,
    )
    out.loaded += keep.height
    out.quarantined += quarantine.height
    out.orphans += orphan_q.height
    return keep, quarantine


def _insert_quarantined(conn: duckdb.DuckDBPyConnection, into: str, quarantine: pl.DataFrame) -> None:
    """Rows to quarantine into a table of the quarantine's shape (stamped now)."""
    conn.register("_quarantine", quarantine)
    conn.execute(f"insert into {into} by name select *, now() as _quarantined_at from _quarantine")
    conn.unregister("_quarantine")


def _check_rates(
    contract: Contract,
    start: dt.date,
    end: dt.date,
    keep: pl.DataFrame,
    quarantine: pl.DataFrame,
    max_rate: float,
    min_quarantined: int,
    out: LoadResult,
) -> None:
    good = dict(keep.group_by("_partition").len().iter_rows())
    bad = dict(quarantine.group_by("_partition").len().iter_rows())
    for day in sorted(set(good) | set(bad)):
        rows, failed = good.get(day, 0) + bad.get(day, 0), bad.get(day, 0)
        out.per_partition[day] = (rows, failed)
        if failed > min_quarantined and failed > max_rate * rows:
            reasons: dict[str, int] = {}
            bad_rows = quarantine.filter(pl.col("_partition") == day)
            for r in bad_rows["_reasons"].to_list():
                for reason in r:
                    reasons[reason] = reasons.get(reason, 0) + 1
            top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
            sources = ", ".join(sorted(str(v) for v in bad_rows["_source"].unique().to_list()))
            raise QuarantineRateExceeded(
                f"{contract.name} from {sources}, business date {day}: {failed} of {rows} rows "
                f"({failed / rows:.1%}) failed the "
                f"contract, above the {max_rate:.0%} limit (DATAOPS_MAX_QUARANTINE_RATE). Top reasons: {top}. "
                f"Nothing was loaded for {start}..{end}; the landed files are kept for inspection."
            )


def _release_orphans(
    conn: duckdb.DuckDBPyConnection, contract: Contract, reread: Callable[[pl.DataFrame], ContractResult]
) -> int:
    """Move quarantined orphans whose parent has since been loaded back into raw.

    Only the orphans no reference of which still surely lacks its parent are read back and checked again
    (``_surely_orphaned``): the others wait in the warehouse, so that a load's cost follows its own rows and
    the parents that arrived, not every orphan ever quarantined (docs/decisions/0104)."""
    surely, params = _surely_orphaned(conn, contract)
    waiting = query_frame(
        conn,
        f"select * exclude (_quarantined_at) from {quarantine_name(contract)} q "
        f"where len(list_filter(_reasons, lambda r: not starts_with(r, '{ORPHAN}'))) = 0 and not ({surely})",
        params,
    )
    if waiting.height == 0:
        return 0
    payloads = [json.loads(p) for p in waiting["_payload"].to_list()]
    source = (
        pl.DataFrame(payloads, infer_schema_length=None).with_columns(pl.all().cast(pl.String))
        if payloads
        else pl.DataFrame()
    )
    batch = pl.concat(
        [source, waiting.select("_system", "_extracted_at", "_run_id", "_partition", "_record_hash", "_source")],
        how="horizontal",
    )
    reread_result = reread(batch)
    candidates = reread_result.valid.with_row_index("_i")
    conn.register("_candidates", candidates)
    still = set(_orphans(conn, contract, "_candidates"))
    conn.unregister("_candidates")
    freed = candidates.filter(~pl.col("_i").is_in(sorted(still)))
    if freed.height == 0:
        return 0
    conn.register("_freed", freed.drop("_i", "_payload"))
    raw_digests.insert_kept(conn, _table(contract), "_freed")
    record_release(conn, contract.system, contract.table, "_freed")
    conn.execute(
        f"delete from {quarantine_name(contract)} q using _freed f "
        f"where q._partition = f._partition and q._record_hash = f._record_hash and q._run_id = f._run_id"
    )
    conn.unregister("_freed")
    return freed.height

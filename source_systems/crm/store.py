"""The mock CRM's store: a SQLite file behind the HTTP API, one table per object.

Every row carries ``SystemModstamp``, the canonical UTC instant of its last change, which the API's
``updated_since``/``updated_until`` filters and cursors use. Other timestamp fields are returned as the
CRM wrote them, which is not always canonical.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import polars as pl

OBJECTS: dict[str, list[str]] = {
    "accounts": [
        "Id",
        "Name",
        "ParentId",
        "BillingCountry",
        "TaxId",
        "Website",
        "Phone",
        "Industry",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
    ],
    "contacts": [
        "Id",
        "AccountId",
        "FirstName",
        "LastName",
        "Email",
        "Phone",
        "Title",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
    ],
    "leads": [
        "Id",
        "FirstName",
        "LastName",
        "Email",
        "Company",
        "Score",
        "Status",
        "LeadSource",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
    ],
    "lead_history": ["Id", "LeadId", "Field", "OldValue", "NewValue", "CreatedDate", "SystemModstamp"],
    "opportunities": [
        "Id",
        "AccountId",
        "Name",
        "StageName",
        "Amount",
        "CurrencyIsoCode",
        "CloseDate",
        "IsClosed",
        "IsWon",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
    ],
    "opportunity_history": ["Id", "OpportunityId", "Field", "OldValue", "NewValue", "CreatedDate", "SystemModstamp"],
}
# Fields the enterprise writes back (reverse ETL); the simulator never reads them.
WRITEBACK_FIELDS = {
    "accounts": [
        "Enterprise_State__c",
        "Enterprise_Delinquent__c",
        "Enterprise_MRR_USD__c",
        "Enterprise_Churn_Risk__c",  # the churn-risk band (registry/churn_risk.yaml)
        "Enterprise_Churn_Reasons__c",  # its top reasons
    ]
}
# Tasks the enterprise opens for an account's owner (a churn-risk action): created through the API, never
# listed for extraction; the table is the CRM's log of them. A repeated idempotency key returns the first.
TASKS_DDL = """
create table if not exists tasks (
    Id text primary key, AccountId text not null, Subject text not null, Description text,
    ActivityDate text, AssignedTo text not null, IdempotencyKey text not null unique, CreatedDate text not null)
"""
TYPES = {
    "Score": "integer",
    "Amount": "real",
    "IsClosed": "integer",
    "IsWon": "integer",
    "Enterprise_Delinquent__c": "integer",
    "Enterprise_MRR_USD__c": "real",
}


def not_writable(fields: dict[str, object]) -> str | None:
    """Why an account write is refused (a field the enterprise may not write), or None."""
    allowed = WRITEBACK_FIELDS["accounts"]
    unknown = set(fields) - set(allowed)
    return f"fields {sorted(unknown)} are not writable; writable: {sorted(allowed)}" if unknown else None


def update_account(conn: sqlite3.Connection, account_id: str, fields: dict[str, object]) -> bool:
    """Set an account's write-back fields (absolute values); False when the CRM has no such account."""
    sets = ", ".join(f"{k} = ?" for k in fields)
    return bool(conn.execute(f"update accounts set {sets} where Id = ?", (*fields.values(), account_id)).rowcount)


def write_accounts(conn: sqlite3.Connection, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply account writes ``{"id", "fields"}`` one by one, each with its own result in the order given
    (``updated``, ``not_found``, or ``invalid`` with its error): the collection endpoint's and the bulk
    update job's semantics, so that both leave the same accounts."""
    results: list[dict[str, Any]] = []
    for record in records:
        account_id, fields = str(record.get("id", "")), record.get("fields") or {}
        error = not_writable(fields) if isinstance(fields, dict) and fields else "no fields to write"
        if error:
            results.append({"id": account_id, "status": "invalid", "error": error})
        elif update_account(conn, account_id, fields):
            results.append({"id": account_id, "status": "updated", "updated": sorted(fields)})
        else:
            results.append({"id": account_id, "status": "not_found"})
    return results


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=off")  # the simulator replays a day idempotently after a crash
    for name, cols in OBJECTS.items():
        all_cols = cols + WRITEBACK_FIELDS.get(name, [])
        defs = ", ".join(f"{c} {TYPES.get(c, 'text')}{' primary key' if c == 'Id' else ''}" for c in all_cols)
        conn.execute(f"create table if not exists {name} ({defs})")
        have = {row[1] for row in conn.execute(f"pragma table_info({name})")}
        for column in WRITEBACK_FIELDS.get(name, []):
            if column not in have:  # a CRM created before the field existed
                conn.execute(f"alter table {name} add column {column} {TYPES.get(column, 'text')}")
        conn.execute(f"create index if not exists {name}_modstamp on {name} (SystemModstamp, Id)")
    conn.execute(TASKS_DDL)
    conn.row_factory = sqlite3.Row
    return conn


def write(conn: sqlite3.Connection, inserts: dict[str, pl.DataFrame], updates: dict[str, pl.DataFrame]) -> None:
    """Apply one day's changes; replaying a day writes the same rows again (idempotent)."""
    for name, cols in OBJECTS.items():
        df = inserts.get(f"crm.{name}")
        if df is not None and df.height:
            df = df.select(cols)
            marks = ", ".join("?" * len(cols))
            conn.executemany(f"insert or replace into {name} ({', '.join(cols)}) values ({marks})", df.rows())
        upd = updates.get(f"crm.{name}")
        if upd is not None and upd.height:
            upd = upd.with_columns(SystemModstamp=upd["LastModifiedDate"])
            fields = [c for c in upd.columns if c != "Id"]
            sets = ", ".join(f"{c} = coalesce(?, {c})" for c in fields)
            conn.executemany(f"update {name} set {sets} where Id = ?", upd.select([*fields, "Id"]).rows())

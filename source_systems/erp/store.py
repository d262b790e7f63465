"""The mock ERP's database: a normalised SQLite schema with soft deletes and ``updated_at`` on every row.

Connectors read it with SQL by watermark, as they would a NetSuite or SAP replica. Timestamps are UTC
written as 'YYYY-MM-DD HH:MM:SS' (the ERP's documented convention), money is REAL in the row's currency.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl

SCHEMA = """
create table if not exists customers (
    customer_no text primary key, customer_name text, country text, tax_number text,
    crm_account_ref text, currency text, credit_limit real, created_on text,
    updated_at text not null, is_deleted integer not null default 0);
create table if not exists products (
    product_code text primary key, description text, product_type text, list_price real,
    updated_at text not null, is_deleted integer not null default 0);
create table if not exists contracts (
    contract_no text primary key, customer_no text, product_code text, currency text,
    monthly_amount real, total_value real, services_amount real, term_months integer,
    signed_on text, go_live_on text, status text, status_changed_at text, end_on text,
    created_at text, updated_at text not null, is_deleted integer not null default 0);
create table if not exists contract_status_history (
    history_id integer primary key, contract_no text, from_status text, to_status text,
    changed_at text, reason text, updated_at text not null);
create table if not exists sales_orders (
    order_no text primary key, customer_no text, contract_no text, order_date text, currency text,
    total_amount real, created_at text, updated_at text not null, is_deleted integer not null default 0);
create table if not exists sales_order_lines (
    line_id integer primary key, order_no text, line_no integer, product_code text, quantity integer,
    unit_price real, line_amount real, updated_at text not null);
create index if not exists customers_updated on customers(updated_at);
create index if not exists products_updated on products(updated_at);
create index if not exists contracts_updated on contracts(updated_at);
create index if not exists history_updated on contract_status_history(updated_at);
create index if not exists orders_updated on sales_orders(updated_at);
create index if not exists lines_updated on sales_order_lines(updated_at);
"""
TABLES = ("customers", "products", "contracts", "contract_status_history", "sales_orders", "sales_order_lines")
KEYS = {
    "customers": "customer_no",
    "products": "product_code",
    "contracts": "contract_no",
    "contract_status_history": "history_id",
    "sales_orders": "order_no",
    "sales_order_lines": "line_id",
}


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    # The simulator replays a day idempotently after a crash, so it need not pay for fsyncs.
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=off")
    conn.executescript(SCHEMA)
    return conn


def write(conn: sqlite3.Connection, inserts: dict[str, pl.DataFrame], updates: dict[str, pl.DataFrame]) -> None:
    """Apply one day's changes; replaying a day writes the same rows again (idempotent)."""
    for table in TABLES:
        df = inserts.get(f"erp.{table}")
        if df is not None and df.height:
            cols = ", ".join(df.columns)
            marks = ", ".join("?" * len(df.columns))
            conn.executemany(f"insert or replace into {table} ({cols}) values ({marks})", df.rows())
        upd = updates.get(f"erp.{table}")
        if upd is not None and upd.height:
            key = KEYS[table]
            sets = ", ".join(f"{c} = ?" for c in upd.columns if c != key)
            rows = upd.select([c for c in upd.columns if c != key] + [key]).rows()
            conn.executemany(f"update {table} set {sets} where {key} = ?", rows)

"""Ingestion contracts of the ERP's tables (SQLite, UTC timestamps without a zone)."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from quality.contracts.base import CURRENCIES, Contract

Money = Annotated[pl.Decimal, 18, 2]
Timestamp = Annotated[pl.Datetime, "us", "UTC"]
CONTRACT_STATES = ["signed", "live", "paused", "cancellation_requested", "ended"]


class Customers(pa.DataFrameModel):
    customer_no: str
    customer_name: str
    country: str | None = pa.Field(nullable=True)
    tax_number: str | None = pa.Field(nullable=True)
    crm_account_ref: str | None = pa.Field(nullable=True)
    currency: str = pa.Field(isin=CURRENCIES)
    credit_limit: Money | None = pa.Field(nullable=True, ge=0)
    created_on: pl.Date
    updated_at: Timestamp
    is_deleted: pl.Boolean


class Products(pa.DataFrameModel):
    product_code: str
    description: str
    product_type: str = pa.Field(isin=["subscription", "services"])
    list_price: Money = pa.Field(ge=0)
    updated_at: Timestamp
    is_deleted: pl.Boolean


class Contracts(pa.DataFrameModel):
    contract_no: str
    customer_no: str
    product_code: str
    currency: str = pa.Field(isin=CURRENCIES)
    monthly_amount: Money = pa.Field(gt=0)
    total_value: Money = pa.Field(gt=0)
    services_amount: Money = pa.Field(ge=0)
    term_months: pl.Int64 = pa.Field(gt=0)
    signed_on: pl.Date
    go_live_on: pl.Date
    status: str = pa.Field(isin=CONTRACT_STATES)
    status_changed_at: Timestamp
    end_on: pl.Date | None = pa.Field(nullable=True)
    created_at: Timestamp
    updated_at: Timestamp
    is_deleted: pl.Boolean


class ContractStatusHistory(pa.DataFrameModel):
    history_id: pl.Int64
    contract_no: str
    from_status: str | None = pa.Field(nullable=True, isin=CONTRACT_STATES)
    to_status: str = pa.Field(isin=CONTRACT_STATES)
    changed_at: Timestamp
    reason: str
    updated_at: Timestamp


class SalesOrders(pa.DataFrameModel):
    order_no: str
    customer_no: str
    contract_no: str
    order_date: pl.Date
    currency: str = pa.Field(isin=CURRENCIES)
    total_amount: Money = pa.Field(gt=0)
    created_at: Timestamp
    updated_at: Timestamp
    is_deleted: pl.Boolean


class SalesOrderLines(pa.DataFrameModel):
    line_id: pl.Int64
    order_no: str
    line_no: pl.Int64
    product_code: str
    quantity: pl.Int64 = pa.Field(gt=0)
    unit_price: Money = pa.Field(gt=0)
    line_amount: Money = pa.Field(gt=0)
    updated_at: Timestamp


CONTRACTS = [
    Contract("erp", "customers", Customers, key=("customer_no",)),
    Contract("erp", "products", Products, key=("product_code",)),
    Contract(
        "erp", "contracts", Contracts, key=("contract_no",), references={"customer_no": ("customers", "customer_no")}
    ),
    Contract(
        "erp",
        "contract_status_history",
        ContractStatusHistory,
        key=("history_id",),
        references={"contract_no": ("contracts", "contract_no")},
    ),
    Contract(
        "erp", "sales_orders", SalesOrders, key=("order_no",), references={"customer_no": ("customers", "customer_no")}
    ),
    Contract(
        "erp",
        "sales_order_lines",
        SalesOrderLines,
        key=("line_id",),
        references={"order_no": ("sales_orders", "order_no")},
    ),
]

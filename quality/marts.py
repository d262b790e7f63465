"""pandera models of the cleansed marts: the rules dbt's relational tests do not express.

Each model validates one dataset as loaded from the build warehouse (see ``quality.gate``); registry
values a rule depends on (a tolerance) arrive as columns of the dataset, so the rules stay static.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from registry.loader import load_registry

STATES = [rule.name for rule in load_registry().customer_states]  # the registry's, in evaluation order
# Transitions a customer's state can make from one day to the next (staying is always possible): the registry's.
TRANSITIONS = {(before, rule.name) for rule in load_registry().customer_states for before in rule.entered_from}


class CustomerStatesDaily(pa.DataFrameModel):
    """fct_customer_states_daily: one state per customer and day, consistent with its contracts."""

    customer_id: str
    date_day: pl.Date
    state: str = pa.Field(isin=STATES)
    previous_state: str = pa.Field(isin=STATES)
    is_delinquent: pl.Boolean
    live_contract_count: pl.Int64 = pa.Field(ge=0)
    paused_contract_count: pl.Int64 = pa.Field(ge=0)

    class Config:
        unique = ("customer_id", "date_day")  # the grain
        strict = False

    @pa.dataframe_check(name="churned_customer_has_no_live_or_paused_contract")
    @classmethod
    def churned_has_nothing_live(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("state") != "churned")
            | ((pl.col("live_contract_count") == 0) & (pl.col("paused_contract_count") == 0))
        )

    @pa.dataframe_check(name="active_customer_has_a_live_contract")
    @classmethod
    def active_has_live(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("state") != "active") | (pl.col("live_contract_count") >= 1))

    @pa.dataframe_check(name="paused_customer_has_a_paused_and_no_live_contract")
    @classmethod
    def paused_is_paused(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("state") != "paused")
            | ((pl.col("live_contract_count") == 0) & (pl.col("paused_contract_count") >= 1))
        )

    @pa.dataframe_check(name="state_changes_follow_the_lifecycle")
    @classmethod
    def known_transition(cls, data: pa.PolarsData) -> pl.LazyFrame:
        allowed = [f"{a}>{b}" for a, b in sorted(TRANSITIONS)]
        move = pl.concat_str([pl.col("previous_state"), pl.col("state")], separator=">")
        return data.lazyframe.select((pl.col("state") == pl.col("previous_state")) | move.is_in(allowed))


class InvoiceSettlement(pa.DataFrameModel):
    """Per invoice: what was paid and credited against what was invoiced."""

    invoice_id: str = pa.Field(unique=True)
    invoice_amount: pl.Float64 = pa.Field(gt=0)
    settled_amount: pl.Float64 = pa.Field(ge=0)
    tolerance: pl.Float64 = pa.Field(ge=0)

    class Config:
        strict = False

    @pa.dataframe_check(name="paid_never_exceeds_invoiced_plus_tolerance")
    @classmethod
    def not_overpaid(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("settled_amount") <= pl.col("invoice_amount") + pl.col("tolerance"))


class Contracts(pa.DataFrameModel):
    """fct_contracts: amounts and milestones that make sense together."""

    contract_id: str
    mrr_amount: pl.Float64 = pa.Field(gt=0)
    total_contract_value: pl.Float64 = pa.Field(gt=0)
    term_months: pl.Int64 = pa.Field(gt=0)
    signed_date: pl.Date
    go_live_date: pl.Date = pa.Field(nullable=True)

    class Config:
        strict = False

    @pa.dataframe_check(name="total_value_covers_the_term")
    @classmethod
    def tcv_covers_term(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("total_contract_value") >= pl.col("mrr_amount") * pl.col("term_months") - 0.005
        )

    @pa.dataframe_check(name="goes_live_after_signature")
    @classmethod
    def live_after_signed(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("go_live_date").is_null() | (pl.col("go_live_date") >= pl.col("signed_date"))
        )

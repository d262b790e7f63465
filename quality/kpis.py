"""pandera models of the KPI tables: value ranges, the grain, consistency, and plausible movements."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl


class KpiDaily(pa.DataFrameModel):
    """kpi_daily rows of the run's window, with the registry's KPI names and the version in force each day."""

    date_day: pl.Date
    kpi_name: str
    value: pl.Float64
    unit: str = pa.Field(isin=["count", "USD"])
    definition_version: str
    is_registry_kpi: pl.Boolean
    registry_version: str

    class Config:
        unique = ("date_day", "kpi_name")  # the grain
        strict = False

    @pa.dataframe_check(name="kpi_is_defined_in_the_registry")
    @classmethod
    def defined(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("is_registry_kpi"))

    @pa.dataframe_check(name="computed_with_the_current_definitions")
    @classmethod
    def current_version(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("definition_version") == pl.col("registry_version"))

    @pa.dataframe_check(name="counts_are_whole_and_not_negative")
    @classmethod
    def counts(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("unit") != "count") | ((pl.col("value") >= 0) & (pl.col("value") == pl.col("value").round(0)))
        )

    @pa.dataframe_check(name="money_is_not_negative_except_revenue")
    @classmethod
    def money(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("unit") != "USD") | (pl.col("kpi_name") == "revenue_usd") | (pl.col("value") >= 0)
        )


class KpiConsistency(pa.DataFrameModel):
    """One row per day: KPIs that are defined from each other must agree."""

    date_day: pl.Date = pa.Field(unique=True)
    mrr_usd: pl.Float64 = pa.Field(ge=0)
    arr_usd: pl.Float64 = pa.Field(ge=0)
    active_customers: pl.Float64 = pa.Field(ge=0)
    new_customers: pl.Float64 = pa.Field(ge=0)

    class Config:
        strict = False

    @pa.dataframe_check(name="arr_is_twelve_times_mrr")
    @classmethod
    def arr(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("arr_usd") - 12 * pl.col("mrr_usd")).abs() < 0.005)

    @pa.dataframe_check(name="new_customers_are_active")
    @classmethod
    def new_within_active(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("new_customers") <= pl.col("active_customers"))


class KpiMovements(pa.DataFrameModel):
    """Day-over-day movements of stock KPIs with their registry bounds (registry: kpi_plausibility)."""

    date_day: pl.Date
    kpi_name: str
    value: pl.Float64
    previous_value: pl.Float64
    max_change_pct: pl.Float64 = pa.Field(gt=0)
    min_base: pl.Float64 = pa.Field(ge=0)
    is_expected: pl.Boolean

    class Config:
        strict = False

    @pa.dataframe_check(name="day_over_day_change_within_plausible_bounds")
    @classmethod
    def plausible(cls, data: pa.PolarsData) -> pl.LazyFrame:
        change_pct = (pl.col("value") - pl.col("previous_value")).abs() / pl.col("previous_value") * 100
        return data.lazyframe.select(
            pl.col("is_expected")
            | (pl.col("previous_value").abs() < pl.col("min_base"))
            | (change_pct <= pl.col("max_change_pct"))
        )

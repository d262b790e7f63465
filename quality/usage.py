"""pandera models of the usage KPIs (``kpis.kpi_usage_daily``): the rules dbt does not hold.

dbt's tests hold the relational ones (the grain is unique, no column is null); these hold what a value may
be (registry names, current definitions, whole counts, shares within 0-100) and what the KPIs of one day
must agree on, so that a model defect never reaches analysts.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl


class UsageKpiDaily(pa.DataFrameModel):
    """kpi_usage_daily rows of the run's window, with each KPI's registry unit and the registry's version."""

    date_day: pl.Date
    kpi_name: str
    value: pl.Float64
    unit: str = pa.Field(nullable=True)  # null: the registry does not define the KPI
    definition_version: str
    registry_version: str

    class Config:
        strict = False

    @pa.dataframe_check(name="usage_kpi_is_defined_in_the_registry")
    @classmethod
    def defined(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("unit").is_not_null())

    @pa.dataframe_check(name="computed_with_the_current_definitions")
    @classmethod
    def current_version(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("definition_version") == pl.col("registry_version"))

    @pa.dataframe_check(name="counts_are_whole_and_not_negative")
    @classmethod
    def counts(cls, data: pa.PolarsData) -> pl.LazyFrame:
        value = pl.col("value")
        return data.lazyframe.select((pl.col("unit") != "count") | ((value >= 0) & (value == value.round(0))))

    @pa.dataframe_check(name="percentages_between_0_and_100")
    @classmethod
    def percentages(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("unit") != "percent") | pl.col("value").is_between(0, 100))

    @pa.dataframe_check(name="rates_are_not_negative")
    @classmethod
    def rates(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("unit").is_in(["count", "percent"]) | (pl.col("value") >= 0))


class UsageKpiConsistency(pa.DataFrameModel):
    """One row per day with its activity KPIs side by side: every one present, and nested as defined.

    A user active on the day is active in the week, and in the 28 days; every customer active by usage has
    an active user; an active user has at least one usage event.
    """

    date_day: pl.Date
    usage_events: pl.Float64
    daily_active_users: pl.Float64
    weekly_active_users: pl.Float64
    monthly_active_users: pl.Float64
    usage_active_customers: pl.Float64

    class Config:
        strict = False

    @pa.dataframe_check(name="active_users_nested_day_week_month")
    @classmethod
    def nested(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("daily_active_users") <= pl.col("weekly_active_users"))
            & (pl.col("weekly_active_users") <= pl.col("monthly_active_users"))
        )

    @pa.dataframe_check(name="active_customers_have_active_users")
    @classmethod
    def customers(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("usage_active_customers") <= pl.col("monthly_active_users"))

    @pa.dataframe_check(name="active_users_have_usage_events")
    @classmethod
    def events(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("daily_active_users") <= pl.col("usage_events"))

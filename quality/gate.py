"""The cleansing gate: load a mart or KPI dataset from the build warehouse, validate it with its pandera
model eagerly (``lazy=True``), and report every failing row (capped) so the UI can show why.

Each check reads only the business dates of the run's window, so its cost follows the run, not history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandera.errors
import pandera.polars as pa
import polars as pl

from quality import churn, kpis, marts, usage
from registry.churn_risk import load_churn_risk
from registry.loader import Registry

FAILURE_CAP = 20


def query_frame(conn: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> pl.DataFrame:
    return conn.sql(sql, params=params or None).pl()


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    rows_checked: int
    failing_rows: int
    failed_checks: dict[str, int]
    failure_cases: pl.DataFrame  # the offending rows (capped), with the rule each broke

    def summary(self) -> str:
        if self.passed:
            return f"{self.name}: {self.rows_checked} rows pass"
        rules = ", ".join(f"{rule} ({n})" for rule, n in self.failed_checks.items())
        return f"{self.name}: {self.failing_rows} of {self.rows_checked} rows fail: {rules}"


def validate(name: str, model: type[pa.DataFrameModel], frame: pl.DataFrame) -> CheckOutcome:
    """Validate eagerly; the failing rows come from pandera's failure cases, joined back to the data."""
    try:
        model.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        rows = cases.filter(pl.col("index").is_not_null())
        counts = dict(cases.group_by("check").len().sort("len", descending=True).iter_rows())
        indexed = frame.with_row_index("_row")
        offending = (
            rows.select(pl.col("index").cast(pl.UInt32).alias("_row"), pl.col("check").alias("_rule"))
            .group_by("_row")
            .agg(pl.col("_rule").unique().sort().str.join("; "))
            .join(indexed, on="_row")
            .sort("_row")
            .drop("_row")
        )
        schema_level = cases.filter(pl.col("index").is_null())
        if schema_level.height:  # a whole-column problem (type, missing column) has no row to show
            problem = schema_level.select(
                pl.lit(None).alias("_row"),
                pl.concat_str([pl.col("column").cast(pl.String), pl.col("check")], separator=": ").alias("_rule"),
            )
            offending = pl.concat([offending, problem.drop("_row")], how="diagonal_relaxed")
        return CheckOutcome(
            name,
            False,
            frame.height,
            offending.height,
            {str(k): int(v) for k, v in counts.items()},
            offending.head(FAILURE_CAP),
        )
    return CheckOutcome(name, True, frame.height, 0, {}, pl.DataFrame())


Loader = Callable[[duckdb.DuckDBPyConnection, dt.date, dt.date, Registry], pl.DataFrame]


def customer_states(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    return query_frame(
        conn, "select * from marts.fct_customer_states_daily where date_day between ? and ?", [start, end]
    )


def invoice_settlement(
    conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry
) -> pl.DataFrame:
    """Invoices that had a payment or credit in the window, with everything settled against them so far."""
    return query_frame(
        conn,
        """
        with touched as (
            select invoice_id from marts.fct_payments where payment_date between ? and ?
            union
            select invoice_id from marts.fct_credit_memos where credit_memo_date between ? and ?
        ),
        settled as (
            select invoice_id, sum(amount) as settled_amount from (
                select invoice_id, payment_amount as amount from marts.fct_payments
                union all
                select invoice_id, credit_amount from marts.fct_credit_memos
            ) group by 1
        )
        select invoices.invoice_id, invoices.customer_id, invoices.invoice_date,
               cast(invoices.invoice_amount as double) as invoice_amount,
               cast(coalesce(settled.settled_amount, 0) as double) as settled_amount,
               cast(? as double) as tolerance
        from marts.fct_invoices as invoices
        inner join touched on touched.invoice_id = invoices.invoice_id
        left join settled on settled.invoice_id = invoices.invoice_id
        order by 1
    """,
        [start, end, start, end, registry.overpayment_tolerance],
    )


def contracts(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    return query_frame(
        conn,
        """
        select contract_id, customer_id, cast(mrr_amount as double) as mrr_amount,
               cast(total_contract_value as double) as total_contract_value, term_months, signed_date, go_live_date
        from marts.fct_contracts order by contract_id
    """,
    )


def kpi_daily(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    frame = query_frame(
        conn,
        """
        select date_day, kpi_name, cast(value as double) as value, unit, definition_version
        from kpis.kpi_daily where date_day between ? and ? order by date_day, kpi_name
    """,
        [start, end],
    )
    return frame.with_columns(
        is_registry_kpi=pl.col("kpi_name").is_in(registry.kpi_names),
        registry_version=_version_per_day(registry),
    )


def _version_per_day(registry: Registry) -> pl.Expr:
    """The definition version in force on each row's day (a change may apply from its effective date on)."""
    version = pl.lit(None, dtype=pl.String)
    for period in reversed(registry.periods):
        in_force = pl.col("date_day").is_between(period.effective_from, period.effective_to)
        version = pl.when(in_force).then(pl.lit(period.registry.version)).otherwise(version)
    return version


def kpi_consistency(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    return query_frame(
        conn,
        """
        select date_day,
               cast(sum(value) filter (where kpi_name = 'mrr_usd') as double) as mrr_usd,
               cast(sum(value) filter (where kpi_name = 'arr_usd') as double) as arr_usd,
               cast(sum(value) filter (where kpi_name = 'active_customers') as double) as active_customers,
               cast(sum(value) filter (where kpi_name = 'new_customers') as double) as new_customers
        from kpis.kpi_daily where date_day between ? and ? group by 1 order by 1
    """,
        [start, end],
    )


def kpi_movements(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    bounds = pl.DataFrame(
        {
            "kpi_name": list(registry.plausibility),
            "max_change_pct": [b.max_change_pct for b in registry.plausibility.values()],
            "min_base": [b.min_base for b in registry.plausibility.values()],
        },
        schema={"kpi_name": pl.String, "max_change_pct": pl.Float64, "min_base": pl.Float64},
    )
    moves = query_frame(
        conn,
        """
        select date_day, kpi_name, cast(value as double) as value, cast(previous_value as double) as previous_value
        from (
            select date_day, kpi_name, value,
                   lag(value) over (partition by kpi_name order by date_day) as previous_value
            from kpis.kpi_daily where date_day between ? - interval 1 day and ?
        )
        where date_day between ? and ? and previous_value is not null
        order by kpi_name, date_day
    """,
        [start, end, start, end],
    )
    expected = pl.DataFrame(
        {
            "kpi_name": [c.kpi for c in registry.expected_changes],
            "date_day": [c.date for c in registry.expected_changes],
        },
        schema={"kpi_name": pl.String, "date_day": pl.Date},
    ).with_columns(is_expected=pl.lit(True))
    return (
        moves.join(bounds, on="kpi_name", how="inner")
        .join(expected, on=["kpi_name", "date_day"], how="left")
        .with_columns(pl.col("is_expected").fill_null(False))
    )


def usage_kpi_daily(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    """The window's usage KPIs with each one's unit from the registry (null when the registry lacks it)."""
    units = pl.DataFrame(
        {"kpi_name": [k.name for k in registry.usage_kpis], "unit": [k.unit for k in registry.usage_kpis]},
        schema={"kpi_name": pl.String, "unit": pl.String},
    )
    frame = query_frame(
        conn,
        """
        select date_day, kpi_name, cast(value as double) as value, definition_version
        from kpis.kpi_usage_daily where date_day between ? and ? order by date_day, kpi_name
    """,
        [start, end],
    )
    return frame.join(units, on="kpi_name", how="left").with_columns(registry_version=pl.lit(registry.version))


USAGE_ACTIVITY = ("usage_events", "daily_active_users", "weekly_active_users", "monthly_active_users")


def usage_kpi_consistency(
    conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry
) -> pl.DataFrame:
    """One row per day of the window that has usage KPIs; a KPI missing on a day is null there."""
    columns = ", ".join(
        f"cast(sum(value) filter (where kpi_name = '{name}') as double) as {name}"
        for name in (*USAGE_ACTIVITY, "usage_active_customers")
    )
    return query_frame(
        conn,
        f"select date_day, {columns} from kpis.kpi_usage_daily where date_day between ? and ? group by 1 order by 1",
        [start, end],
    )


def churn_risk(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry) -> pl.DataFrame:
    return query_frame(
        conn,
        "select * from marts.customer_churn_risk where score_date between ? and ? order by score_date, customer_id",
        [start, end],
    )


def churn_feature_drift(
    conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry
) -> pl.DataFrame:
    rules = load_churn_risk()
    return query_frame(
        conn,
        """
        select score_date, feature, model_version, customers, mean_shift_sd,
               cast(? as double) as max_shift_sd, cast(? as bigint) as min_customers
        from models.churn_feature_drift where score_date between ? and ? order by score_date, feature
    """,
        [rules.max_feature_shift_sd, rules.min_customers_for_drift, start, end],
    )


@dataclass(frozen=True)
class GateCheck:
    name: str
    asset: tuple[str, ...]  # the asset (warehouse table) the check belongs to
    model: type[pa.DataFrameModel]
    load: Loader
    description: str


GATE: tuple[GateCheck, ...] = (
    GateCheck(
        "customer_states_are_consistent",
        ("marts", "fct_customer_states_daily"),
        marts.CustomerStatesDaily,
        customer_states,
        "One state per customer and day, consistent with its contracts and lifecycle.",
    ),
    GateCheck(
        "payments_within_invoiced",
        ("marts", "fct_invoices"),
        marts.InvoiceSettlement,
        invoice_settlement,
        "Paid and credited never exceed what was invoiced (plus the registry's tolerance).",
    ),
    GateCheck(
        "contract_amounts_consistent",
        ("marts", "fct_contracts"),
        marts.Contracts,
        contracts,
        "Contract amounts are positive, the total value covers the term, go-live follows signature.",
    ),
    GateCheck(
        "kpi_values_valid",
        ("kpis", "kpi_daily"),
        kpis.KpiDaily,
        kpi_daily,
        "KPI values are in range, at their grain, and computed with the current registry.",
    ),
    GateCheck(
        "kpis_consistent",
        ("kpis", "kpi_daily"),
        kpis.KpiConsistency,
        kpi_consistency,
        "KPIs defined from each other agree (ARR is 12 x MRR, new customers are active).",
    ),
    GateCheck(
        "usage_kpi_values_valid",
        ("kpis", "kpi_usage_daily"),
        usage.UsageKpiDaily,
        usage_kpi_daily,
        "Usage KPI values are registry KPIs, computed with the current registry, whole counts and shares in 0-100.",
    ),
    GateCheck(
        "usage_kpis_consistent",
        ("kpis", "kpi_usage_daily"),
        usage.UsageKpiConsistency,
        usage_kpi_consistency,
        "Each day has every activity KPI, nested as defined (daily within weekly within monthly users).",
    ),
    GateCheck(
        "kpi_movements_plausible",
        ("kpis", "kpi_daily"),
        kpis.KpiMovements,
        kpi_movements,
        "Day-over-day movements stay within the registry's bounds unless marked expected.",
    ),
)
# The churn-risk scores' checks: a step of their own after scoring (in the marts' gate step, they would make it
# wait for the scores, which wait for the marts' gate: Dagster would split dbt's step in two to order them).
CHURN_GATE: tuple[GateCheck, ...] = (
    GateCheck(
        "churn_scores_not_degenerate",
        ("marts", "customer_churn_risk"),
        churn.ChurnRisk,
        churn_risk,
        "One probability per customer and date, banded; a date's scores neither all missing nor all equal.",
    ),
    GateCheck(
        "churn_features_not_drifted",
        ("marts", "customer_churn_risk"),
        churn.ChurnFeatureDrift,
        churn_feature_drift,
        "No feature's mean on a scoring date moved beyond the registry's limit from the training data's.",
    ),
)


def run_check(
    check: GateCheck, conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, registry: Registry
) -> CheckOutcome:
    return validate(check.name, check.model, check.load(conn, start, end, registry))

{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ note_and_delete_kpi_days() }}",
    post_hook=["{{ consume_money_notes() }}", "{{ consume_kpi_count_notes() }}"]
) }}

-- depends_on: {{ ref('fct_gl_entries') }}
-- depends_on: {{ ref('fct_payments') }}
-- depends_on: {{ ref('fct_credit_memos') }}
-- depends_on: {{ ref('fct_invoices') }}

-- Every KPI of the registry on every business date, from marts only. Incremental runs recompute from the
-- first day their data can change (late journal lines, re-exported payments, or a contract, opportunity or rate
-- changed that the money KPIs noted: macros/incremental_money.sql; the first day a count it holds differs from
-- the customer or funnel counts: macros/incremental_counts.sql) through the last day.

with

dates as (

    select date_day from {{ ref('dim_dates') }}
    where date_day >= {{ kpi_days_from() }}

),

definitions as (

    select * from {{ ref('registry_kpis') }}

),

periods as (

    select * from {{ ref('registry_definition_periods') }}

),

customers as (

    select * from {{ ref('int_kpis_customers_counted') }}

),

money as (

    select * from {{ ref('int_kpis_money_summed') }}

),

funnel as (

    select * from {{ ref('int_kpis_funnel_counted') }}

),

customer_values as (

    select
        date_day,
        kpi_name,
        value
    from customers
    unpivot (value for kpi_name in (active_customers, new_customers, churned_customers, delinquent_customers))

),

all_values as (

    select
        date_day,
        kpi_name,
        cast(value as decimal(38, 2)) as value
    from customer_values
    union all
    select
        date_day,
        kpi_name,
        cast(value as decimal(38, 2)) as value
    from money
    union all
    select
        date_day,
        kpi_name,
        cast(value as decimal(38, 2)) as value
    from funnel

),

grid as (

    select
        dates.date_day,
        definitions.kpi_name,
        definitions.unit,
        definitions.kpi_order,
        periods.definition_version
    from dates
    inner join periods on dates.date_day between periods.effective_from and periods.effective_to
    cross join definitions

),

final as (

    select
        grid.date_day,
        grid.kpi_name,
        grid.unit,
        grid.definition_version,
        coalesce(all_values.value, 0) as value

    from grid
    left join all_values on grid.date_day = all_values.date_day and grid.kpi_name = all_values.kpi_name

)

select * from final

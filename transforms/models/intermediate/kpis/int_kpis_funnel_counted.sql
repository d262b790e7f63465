{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ note_and_delete_funnel_days() }}",
    post_hook="{{ keep_funnel_inputs() }}"
) }}

-- Funnel KPIs per day: MQLs and SQLs by person (registry: mql, sql), opportunities won. A day counts the
-- people who became MQL or SQL on it under the definitions in force on it (seed registry_definition_periods).
-- Incremental on DuckDB: a run recounts the days from the first one a person's MQL or SQL day, a definition
-- period or the day's won opportunities changed since this model last ran (macros/incremental_counts.sql,
-- decision 0089).

{%- set from_date = count_days_from('int_kpis_funnel_counted') %}

with

people as (

    select * from {{ ref('int_people_qualified') }}
    where mql_date >= {{ from_date }} or sql_date >= {{ from_date }}

),

periods as (

    select * from {{ ref('registry_definition_periods') }}

),

opportunities as (

    select * from {{ ref('fct_opportunities') }}

),

mqls as (

    select
        people.mql_date as date_day,
        'mqls' as kpi_name,
        count(*) as value
    from people
    inner join periods
        on
            people.period = periods.period
            and people.mql_date between periods.effective_from and periods.effective_to
    where people.mql_date >= {{ from_date }}
    group by 1

),

sqls as (

    select
        people.sql_date,
        'sqls' as kpi_name,
        count(*) as value
    from people
    inner join periods
        on
            people.period = periods.period
            and people.sql_date between periods.effective_from and periods.effective_to
    where people.sql_date >= {{ from_date }}
    group by 1

),

won as (

    select
        closed_date,
        'opportunities_won' as kpi_name,
        count(*) as value
    from opportunities
    where is_won and closed_date >= {{ from_date }}
    group by 1

),

final as (

    select * from mqls
    union all
    select * from sqls
    union all
    select * from won

)

select * from final

-- Funnel KPIs per day: MQLs and SQLs by person (registry: mql, sql), opportunities won. A day counts the
-- people who became MQL or SQL on it under the definitions in force on it (seed registry_definition_periods).

with

people as (

    select * from {{ ref('int_people_qualified') }}

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
    group by 1

),

won as (

    select
        closed_date,
        'opportunities_won' as kpi_name,
        count(*) as value
    from opportunities
    where is_won
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

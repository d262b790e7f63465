-- Funnel KPIs per day: MQLs and SQLs by person (registry: mql, sql), opportunities won.

with

people as (

    select * from {{ ref('dim_people') }}

),

opportunities as (

    select * from {{ ref('fct_opportunities') }}

),

mqls as (

    select
        mql_date as date_day,
        'mqls' as kpi_name,
        count(*) as value
    from people
    where mql_date is not null
    group by 1

),

sqls as (

    select
        sql_date,
        'sqls' as kpi_name,
        count(*) as value
    from people
    where sql_date is not null
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

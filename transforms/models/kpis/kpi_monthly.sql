-- Month-end values of stock KPIs and monthly totals of flow KPIs (registry: kpis[].kind).

with

daily as (

    select * from {{ ref('kpi_daily') }}

),

definitions as (

    select * from {{ ref('registry_kpis') }}

),

dates as (

    select * from {{ ref('dim_dates') }}

),

by_month as (

    select
        dates.month_start_date,
        dates.month_end_date,
        daily.kpi_name,
        definitions.kind,
        daily.unit,
        max(daily.date_day) as as_of_date,
        sum(daily.value) as total_value,
        max_by(daily.value, daily.date_day) as last_value,
        max_by(daily.definition_version, daily.date_day) as definition_version

    from daily
    inner join dates on daily.date_day = dates.date_day
    inner join definitions on daily.kpi_name = definitions.kpi_name
    group by 1, 2, 3, 4, 5

),

final as (

    select
        month_start_date,
        month_end_date,
        kpi_name,
        unit,
        kind,
        as_of_date,
        definition_version,
        case when kind = 'stock' then last_value else total_value end as value,
        as_of_date = month_end_date as is_complete_month

    from by_month

)

select * from final

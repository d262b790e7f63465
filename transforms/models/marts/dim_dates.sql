-- The business calendar: one row per UTC business date the sources cover, with the month's close date
-- (registry: close_calendar.month_close_business_day business days after the month's last day).

with

rates as (

    select rate_date from {{ ref('stg_accounting__fx_rates') }}

),

bounds as (

    select
        min(rate_date) as first_date,
        max(rate_date) as last_date
    from rates

),

calendar as (

    -- a little beyond the last date, so every month covered has its close date
    select days.date_day
    from bounds, {{ day_series('first_date', 'last_date + interval 45 day') }}

),

business_days as (

    select
        date_day,
        {{ day_of_week('date_day') }} between 1 and 5 as is_business_day
    from calendar

),

month_ends as (

    select distinct last_day(date_day) as month_end_date from business_days

),

closes as (

    select
        month_ends.month_end_date,
        business_days.date_day as close_date

    from month_ends
    inner join business_days
        on
            month_ends.month_end_date < business_days.date_day
            and business_days.is_business_day
    qualify
        row_number() over (partition by month_ends.month_end_date order by business_days.date_day)
        = {{ var('month_close_business_day') }}

),

final as (

    select
        business_days.date_day,
        cast(date_trunc('month', business_days.date_day) as date) as month_start_date,
        business_days.is_business_day,
        closes.close_date as month_close_date,
        last_day(business_days.date_day) as month_end_date,
        cast(year(business_days.date_day) as bigint) as year_number,
        cast(month(business_days.date_day) as bigint) as month_number,
        {{ day_of_week('business_days.date_day') }} as day_of_week,
        business_days.date_day = last_day(business_days.date_day) as is_month_end

    from business_days
    left join closes on closes.month_end_date = last_day(business_days.date_day)
    cross join bounds
    where business_days.date_day <= bounds.last_date

)

select * from final

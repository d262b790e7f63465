{{ config(enabled=(target.type != 'spark')) }}

-- Daily customer activity: one row per customer (ultimate parent) and day on which one of its users used
-- the product in the monthly window ending that day (registry: usage.window_days.monthly).

{%- set monthly = var('usage_window_days')['monthly'] %}

with

users_daily as (

    select * from {{ ref('int_usage_users_daily') }}
    where customer_key is not null

),

bounds as (

    select
        min(date_day) as first_day,
        max(date_day) as last_day
    from users_daily

),

days as (

    select days.date_day
    from bounds, {{ day_series('first_day', 'last_day') }}
    where bounds.first_day is not null

),

final as (

    select
        days.date_day,
        users_daily.customer_key,
        count(distinct case when users_daily.date_day = days.date_day then users_daily.user_id end)
            as active_users,
        coalesce(sum(case when users_daily.date_day = days.date_day then users_daily.usage_events end), 0)
            as usage_events,
        count(distinct users_daily.user_id) as monthly_active_users

    from days
    inner join users_daily
        on users_daily.date_day > days.date_day - {{ monthly }} and days.date_day >= users_daily.date_day
    group by 1, 2

)

select * from final

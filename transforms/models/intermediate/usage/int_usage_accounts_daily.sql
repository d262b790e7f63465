{{ config(enabled=(target.type != 'spark')) }}

-- Daily account activity: one row per account and day its users used the product.

with

users_daily as (

    select * from {{ ref('int_usage_users_daily') }}

),

final as (

    select
        date_day,
        account_id,
        customer_key,
        count(*) as active_users,
        sum(usage_events) as usage_events

    from users_daily
    group by 1, 2, 3

)

select * from final

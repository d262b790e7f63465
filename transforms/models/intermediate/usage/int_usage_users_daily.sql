{{ config(enabled=(target.type != 'spark')) }}

-- Daily user activity: one row per user and day they used the product, with their usage events.

with

attributed as (

    select * from {{ ref('int_usage_events_attributed') }}

),

final as (

    select
        event_date as date_day,
        user_id,
        account_id,
        customer_key,
        count(*) as usage_events

    from attributed
    group by 1, 2, 3, 4

)

select * from final

-- The product's usage by customer, day, user and feature, with the date it was received: the receipt of its
-- latest event, or the sign-in that attributed an anonymous device if that came later. The churn-risk
-- features read it (dataops/models/features.py), counting a row on a scoring date only once it was known
-- by then (received, plus the lake's delivery delay). A table, so that it comes back from Spark too.

{{ config(materialized='table') }}

with

attributed as (

    select * from {{ ref('int_usage_events_attributed') }}

),

events as (

    select * from {{ ref('stg_product__events') }}

),

devices as (

    select * from {{ ref('stg_product__event_devices') }}

),

received as (

    select
        attributed.customer_key as customer_id,
        attributed.event_date,
        attributed.user_id,
        attributed.feature,
        cast(
            greatest(events.received_at, coalesce(devices.first_received_at, events.received_at)) as date
        ) as received_date

    from attributed
    inner join events on attributed.event_id = events.event_id
    left join devices
        on events.user_id is null and events.device_id = devices.device_id
    where attributed.customer_key is not null

),

final as (

    select
        customer_id,
        event_date,
        user_id,
        feature,
        received_date,
        count(*) as usage_events

    from received
    group by 1, 2, 3, 4, 5

)

select * from final

-- Seats assigned and revoked per customer (ultimate parent) and day, with the date they were received. The
-- churn-risk features read it (dataops/models/features.py) as they read int_usage_known_daily. A table, so
-- that it comes back from Spark too.

{%- set seats = var('usage_seat_events') %}

{{ config(materialized='table') }}

with

events as (

    select * from {{ ref('stg_product__events') }}

),

accounts as (

    select * from {{ ref('int_accounts_hierarchy_resolved') }}

),

seat_events as (

    select
        accounts.ultimate_parent_id as customer_id,
        events.event_date,
        cast(events.received_at as date) as received_date,
        events.event_name

    from events
    inner join accounts on events.account_ref = accounts.account_id
    where
        not events.is_excluded
        and events.event_name in ('{{ seats["assigned"] }}', '{{ seats["revoked"] }}')

),

final as (

    select
        customer_id,
        event_date,
        received_date,
        sum(case when event_name = '{{ seats["assigned"] }}' then 1 else 0 end) as seats_assigned,
        sum(case when event_name = '{{ seats["revoked"] }}' then 1 else 0 end) as seats_revoked

    from seat_events
    group by 1, 2, 3

)

select * from final

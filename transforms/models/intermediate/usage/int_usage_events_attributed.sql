{{ config(enabled=(target.type != 'spark')) }}

-- The events that count as usage (registry: usage), each with its user, the user's account and customer,
-- and the feature it belongs to. Bots, probes and seat events do not count; an anonymous event counts for
-- the first user its device signed in as; an event whose device never signed in counts for nobody.

{%- set seats = var('usage_seat_events') %}
{%- set features = var('usage_features') %}

with

events as (

    select * from {{ ref('stg_product__events') }}

),

devices as (

    select * from {{ ref('stg_product__event_devices') }}

),

accounts as (

    select * from {{ ref('int_accounts_hierarchy_resolved') }}

),

counted as (

    select
        events.event_id,
        events.event_name,
        events.event_time,
        events.event_date,
        events.account_ref,
        coalesce(events.user_id, devices.user_id) as user_id

    from events
    left join devices
        on events.user_id is null and events.device_id = devices.device_id
    where
        not events.is_excluded
        and events.event_name not in ('{{ seats["assigned"] }}', '{{ seats["revoked"] }}')

),

-- a user belongs to one account: the one their events name (the latest, should it ever change)
user_accounts as (

    select
        user_id,
        max_by(account_ref, event_time) as account_id

    from counted
    where user_id is not null and account_ref is not null
    group by 1

),

final as (

    select
        counted.event_id,
        counted.event_date,
        counted.event_time,
        counted.event_name,
        case
            {%- for feature, types in features.items() %}
                when
                    counted.event_name in (
                        '{{ types | join("', '") }}'
                    )
                    then '{{ feature }}'
            {%- endfor %}
        end as feature,
        counted.user_id,
        user_accounts.account_id,
        accounts.ultimate_parent_id as customer_key

    from counted
    left join user_accounts on counted.user_id = user_accounts.user_id
    left join accounts on user_accounts.account_id = accounts.account_id
    where counted.user_id is not null

)

select * from final

-- The customer health score (registry: usage.health_score): per customer and day with a live or paused
-- contract, the start points less the points of each rule that holds; below at_risk_below it is at risk.
-- Usage is the event lake's current knowledge: late events restate the days they belong to when rebuilt.

{%- set health = var('usage_health_score') %}
{%- set points = health['deductions'] %}
{%- set trend = health['trend_days'] %}
{%- set monthly = var('usage_window_days')['monthly'] %}
{%- set seats = var('usage_seat_events') %}

with

states as (

    select * from {{ ref('fct_customer_states_daily') }}

),

users_daily as (

    select * from {{ ref('int_usage_users_daily') }}

),

events as (

    select * from {{ ref('stg_product__events') }}

),

accounts as (

    select * from {{ ref('int_accounts_hierarchy_resolved') }}

),

scored as (

    select
        customer_id,
        date_day,
        is_delinquent,
        paused_contract_count > 0 as has_paused_contract

    from states
    where live_contract_count > 0 or paused_contract_count > 0

),

customer_events as (

    select
        customer_key,
        date_day,
        sum(usage_events) as usage_events

    from users_daily
    where customer_key is not null
    group by 1, 2

),

trend as (

    select
        scored.customer_id,
        scored.date_day,
        coalesce(
            sum(
                case
                    when customer_events.date_day > scored.date_day - {{ trend }}
                        then customer_events.usage_events
                end
            ),
            0
        ) as events_recent,
        coalesce(
            sum(
                case
                    when customer_events.date_day <= scored.date_day - {{ trend }}
                        then customer_events.usage_events
                end
            ),
            0
        ) as events_prior

    from scored
    left join customer_events
        on
            scored.customer_id = customer_events.customer_key
            and scored.date_day - {{ 2 * trend }} < customer_events.date_day
            and scored.date_day >= customer_events.date_day
    group by 1, 2

),

monthly_users as (

    select
        scored.customer_id,
        scored.date_day,
        count(distinct users_daily.user_id) as monthly_active_users

    from scored
    left join users_daily
        on
            scored.customer_id = users_daily.customer_key
            and scored.date_day - {{ monthly }} < users_daily.date_day
            and scored.date_day >= users_daily.date_day
    group by 1, 2

),

seat_changes as (

    select
        accounts.ultimate_parent_id as customer_key,
        events.event_date,
        sum(case when events.event_name = '{{ seats["assigned"] }}' then 1 else -1 end) as seat_change

    from events
    inner join accounts on events.account_ref = accounts.account_id
    where
        not events.is_excluded
        and events.event_name in ('{{ seats["assigned"] }}', '{{ seats["revoked"] }}')
    group by 1, 2

),

customer_seats as (

    select
        scored.customer_id,
        scored.date_day,
        coalesce(sum(seat_changes.seat_change), 0) as seats

    from scored
    left join seat_changes
        on
            scored.customer_id = seat_changes.customer_key
            and scored.date_day >= seat_changes.event_date
    group by 1, 2

),

rules as (

    select
        scored.customer_id,
        scored.date_day,
        trend.events_recent,
        trend.events_prior,
        monthly_users.monthly_active_users,
        customer_seats.seats,
        scored.is_delinquent,
        scored.has_paused_contract,
        2 * trend.events_recent < trend.events_prior as is_usage_declining,
        2 * monthly_users.monthly_active_users < customer_seats.seats as is_low_seat_use

    from scored
    inner join trend on scored.customer_id = trend.customer_id and scored.date_day = trend.date_day
    inner join monthly_users
        on scored.customer_id = monthly_users.customer_id and scored.date_day = monthly_users.date_day
    inner join customer_seats
        on scored.customer_id = customer_seats.customer_id and scored.date_day = customer_seats.date_day

),

scores as (

    select
        *,
        greatest(
            {{ health['start'] }}
            - case when is_usage_declining then {{ points['usage_decline'] }} else 0 end
            - case when is_low_seat_use then {{ points['low_seat_use'] }} else 0 end
            - case when is_delinquent then {{ points['delinquent'] }} else 0 end
            - case when has_paused_contract then {{ points['paused'] }} else 0 end,
            0
        ) as health_score

    from rules

),

final as (

    select
        date_day,
        customer_id,
        cast(events_recent as bigint) as events_recent,
        cast(events_prior as bigint) as events_prior,
        cast(monthly_active_users as bigint) as monthly_active_users,
        cast(seats as bigint) as seats,
        is_usage_declining,
        is_low_seat_use,
        is_delinquent,
        has_paused_contract,
        cast(health_score as integer) as health_score,
        health_score < {{ health['at_risk_below'] }} as is_at_risk

    from scores

)

select * from final

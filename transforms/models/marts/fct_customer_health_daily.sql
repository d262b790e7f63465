{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key=['customer_id', 'date_day'],
    on_schema_change='fail',
    pre_hook="{{ delete_health_days_noted() }}",
    post_hook="{{ keep_health_usage_inputs() }}"
) }}

-- The customer health score (registry: usage.health_score): per customer and day with a live or paused
-- contract, the start points less the points of each rule that holds; below at_risk_below it is at risk.
-- Usage is the event lake's current knowledge: late events restate the days they belong to. Incremental on
-- DuckDB: a run recomputes the customer-days whose states the states mart recomputed since (its notes,
-- decision 0081) and, for a customer whose usage inputs changed since the last build, every day from the first
-- that changed (macros/incremental_health.sql, decision 0072).

{%- set health = var('usage_health_score') %}
{%- set points = health['deductions'] %}
{%- set trend = health['trend_days'] %}
{%- set monthly = var('usage_window_days')['monthly'] %}

with

states as (

    select * from {{ ref('fct_customer_states_daily') }}
    {{- only_health_days_to_recompute(ref('fct_customer_states_daily')) }}

),

usage as (

    select * from {{ ref('int_usage_known_daily') }}

),

seat_changes as (

    select * from {{ ref('int_usage_seat_changes_daily') }}

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

customer_users as (

    select distinct
        customer_id,
        event_date,
        user_id

    from usage

),

customer_events as (

    select
        customer_id as customer_key,
        event_date as date_day,
        sum(usage_events) as usage_events

    from usage
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
        count(distinct customer_users.user_id) as monthly_active_users

    from scored
    left join customer_users
        on
            scored.customer_id = customer_users.customer_id
            and scored.date_day - {{ monthly }} < customer_users.event_date
            and scored.date_day >= customer_users.event_date
    group by 1, 2

),

customer_seat_changes as (

    select
        customer_id as customer_key,
        event_date,
        sum(seats_assigned - seats_revoked) as seat_change

    from seat_changes
    group by 1, 2

),

customer_seats as (

    select
        scored.customer_id,
        scored.date_day,
        coalesce(sum(customer_seat_changes.seat_change), 0) as seats

    from scored
    left join customer_seat_changes
        on
            scored.customer_id = customer_seat_changes.customer_key
            and scored.date_day >= customer_seat_changes.event_date
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

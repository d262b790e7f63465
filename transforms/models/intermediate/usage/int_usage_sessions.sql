-- Usage sessions (registry: usage.session_gap_minutes): a user's usage events of one day in time order, a
-- new session after a gap of more than the session gap. A session never spans two days.

{%- set gap_ms = var('usage_session_gap_minutes') * 60000 %}

with

attributed as (

    select * from {{ ref('int_usage_events_attributed') }}

),

timed as (

    select
        user_id,
        account_id,
        customer_key,
        event_date,
        event_time,
        {{ epoch_millis('event_time') }} as event_ms

    from attributed

),

gaps as (

    select
        *,
        case
            when event_ms - lag(event_ms) over (partition by user_id, event_date order by event_ms) <= {{ gap_ms }}
                then 0
            else 1
        end as is_session_start

    from timed

),

numbered as (

    select
        *,
        sum(is_session_start) over (
            partition by user_id, event_date order by event_ms rows between unbounded preceding and current row
        ) as session_number

    from gaps

),

final as (

    select
        event_date as date_day,
        user_id,
        account_id,
        customer_key,
        session_number,
        user_id || '|' || cast(event_date as string) || '|' || cast(session_number as string) as session_id,
        min(event_time) as session_start,
        max(event_time) as session_end,
        max(event_ms) - min(event_ms) as length_ms,
        count(*) as usage_events

    from numbered
    group by 1, 2, 3, 4, 5

)

select * from final

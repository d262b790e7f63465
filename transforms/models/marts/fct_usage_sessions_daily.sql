-- Usage sessions per day (int_usage_sessions): how many, by how many users, and how long they last on
-- average and at the median, in seconds rounded to 2 decimals half up. As the event lake knows them now:
-- late events restate the days they belong to when rebuilt.

with

sessions as (

    select * from {{ ref('int_usage_sessions') }}

),

daily as (

    select
        date_day,
        count(*) as sessions,
        count(distinct user_id) as session_users,
        cast(sum(usage_events) as bigint) as usage_events,
        cast(sum(length_ms) as bigint) as total_length_ms,
        {{ median_of('length_ms') }} as median_length_ms

    from sessions
    group by 1

),

final as (

    select
        date_day,
        sessions,
        session_users,
        usage_events,
        -- half up in integer hundredths of a second, so both engines round alike
        cast(floor((2 * total_length_ms + 10 * sessions) / (20 * sessions)) / 100 as decimal(18, 2))
            as avg_session_seconds,
        cast(floor((2 * median_length_ms + 10) / 20) / 100 as decimal(18, 2)) as median_session_seconds

    from daily

)

select * from final

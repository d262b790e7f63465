-- schema usage, not kpis: analysts get it once the quality gate covers it (issue 27), never before.
{{ config(enabled=(target.type != 'spark'), schema='usage') }}

-- The product's usage KPIs (registry: usage_kpis) on every day from the first usage to the last, as the
-- lake knows them now: late events restate the days they belong to when the model is rebuilt.
-- at_risk_customers needs the health score, which is not built yet.

{%- set windows = var('usage_window_days') %}
{%- set adoption = var('usage_adoption_window_days') %}
{%- set features = var('usage_features') %}
{%- set seats = var('usage_seat_events') %}
{%- set widest = [windows['weekly'], windows['monthly'], adoption] | max %}

with

users_daily as (

    select * from {{ ref('int_usage_users_daily') }}

),

attributed as (

    select * from {{ ref('int_usage_events_attributed') }}

),

events as (

    select * from {{ ref('stg_product__events') }}

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

users as (

    select
        days.date_day,
        coalesce(sum(case when users_daily.date_day = days.date_day then users_daily.usage_events end), 0)
            as usage_events,
        count(distinct case when users_daily.date_day = days.date_day then users_daily.user_id end)
            as daily_active_users,
        count(
            distinct case
                when users_daily.date_day > days.date_day - {{ windows['weekly'] }} then users_daily.user_id
            end
        )
            as weekly_active_users,
        count(
            distinct case
                when users_daily.date_day > days.date_day - {{ windows['monthly'] }} then users_daily.user_id
            end
        )
            as monthly_active_users,
        count(
            distinct case
                when users_daily.date_day > days.date_day - {{ windows['monthly'] }} then users_daily.customer_key
            end
        )
            as usage_active_customers

    from days
    left join users_daily
        on users_daily.date_day > days.date_day - {{ widest }} and days.date_day >= users_daily.date_day
    group by 1

),

customer_features as (

    select distinct
        event_date,
        customer_key,
        feature
    from attributed
    where feature is not null and customer_key is not null

),

adopters as (

    select
        days.date_day,
    {%- for feature in features %}
        count(distinct case when customer_features.feature = '{{ feature }}' then customer_features.customer_key end)
            as adopters_{{ feature }}{{ "," if not loop.last }}
    {%- endfor %}

    from days
    left join customer_features
        on
            customer_features.event_date > days.date_day - {{ adoption }}
            and days.date_day >= customer_features.event_date
    group by 1

),

seat_changes as (

    select
        event_date,
        sum(case when event_name = '{{ seats["assigned"] }}' then 1 else -1 end) as seat_change
    from events
    where not is_excluded and event_name in ('{{ seats["assigned"] }}', '{{ seats["revoked"] }}')
    group by 1

),

seats as (

    select
        days.date_day,
        coalesce(sum(seat_changes.seat_change), 0) as seats
    from days
    left join seat_changes on days.date_day >= seat_changes.event_date
    group by 1

),

measured as (

    select
        users.*,
        {%- for feature in features %}
            {{ ratio_rounded('adopters.adopters_' ~ feature, 'users.usage_active_customers', 100) }}
                as feature_adoption_{{ feature }},
        {%- endfor %}
        {{ ratio_rounded('users.usage_events', 'seats.seats', 1) }} as usage_per_seat

    from users
    inner join adopters on users.date_day = adopters.date_day
    inner join seats on users.date_day = seats.date_day

),

final as (

    {%- set names = ['usage_events', 'daily_active_users', 'weekly_active_users', 'monthly_active_users',
        'usage_active_customers'] %}
    {%- for feature in features %}{% do names.append('feature_adoption_' ~ feature) %}{% endfor %}
    {%- do names.append('usage_per_seat') %}
    {%- for name in names %}
        select
            date_day,
            '{{ name }}' as kpi_name,
            cast({{ name }} as decimal(38, 2)) as value,
            '{{ var("registry_version") }}' as definition_version
        from measured
        {{ "union all" if not loop.last }}
    {%- endfor %}

)

select * from final

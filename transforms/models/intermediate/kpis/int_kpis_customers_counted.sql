{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_customer_count_days() }}",
    post_hook="{{ consume_customer_notes() }}"
) }}

-- Customer KPIs per day from the daily customer states (registry: active, new, churned, delinquent).
-- Incremental on DuckDB: a run recounts the days from the first one the states mart recomputed for any customer
-- since this model last ran (macros/incremental_counts.sql, decision 0089).

with

states as (

    select * from {{ ref('fct_customer_states_daily') }}
    where date_day >= {{ customer_count_days_from() }}

),

final as (

    select
        date_day,
        count(*) filter (where state = 'active') as active_customers,
        count(*) filter (
            where state = 'active' and previous_state in ('prospect', 'onboarding', 'churned')
        ) as new_customers,
        count(*) filter (where state = 'churned' and previous_state <> 'churned') as churned_customers,
        count(*) filter (where is_delinquent) as delinquent_customers

    from states
    group by 1

)

select * from final

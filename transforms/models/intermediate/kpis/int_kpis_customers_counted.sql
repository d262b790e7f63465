-- Customer KPIs per day from the daily customer states (registry: active, new, churned, delinquent).

with

states as (

    select * from {{ ref('fct_customer_states_daily') }}

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

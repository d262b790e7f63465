-- The event log of the customer data state: one row per transition of a customer's state, with the
-- contract events of that day as its cause.

with

states as (

    select * from {{ ref('fct_customer_states_daily') }}

),

contract_events as (

    select * from {{ ref('fct_contract_state_events') }}

),

transitions as (

    select
        customer_id,
        date_day as changed_date,
        previous_state as from_state,
        state as to_state
    from states
    where state <> previous_state

),

causes as (

    select
        customer_id,
        changed_date,
        {{ string_agg_ordered(
            "contract_id || ' ' || coalesce(from_status, 'new') || '->' || to_status", '; ', 'changed_at'
        ) }} as cause

    from contract_events
    group by 1, 2

),

final as (

    select
        transitions.customer_id,
        transitions.from_state,
        transitions.to_state,
        transitions.changed_date,
        transitions.customer_id || '@' || cast(transitions.changed_date as string) as customer_state_event_id,
        coalesce(causes.cause, 'no contract change that day') as cause

    from transitions
    left join causes
        on transitions.customer_id = causes.customer_id and transitions.changed_date = causes.changed_date

)

select * from final

{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=["{{ delete_affected_days(this, 'changed_date') }}", "{{ delete_state_events_noted() }}"],
    post_hook="{{ consume_customer_notes() }}"
) }}

-- depends_on: {{ ref('fct_gl_entries') }}
-- depends_on: {{ ref('fct_payments') }}
-- depends_on: {{ ref('fct_credit_memos') }}
-- depends_on: {{ ref('fct_invoices') }}

-- The event log of the customer data state: one row per transition of a customer's state, with the
-- contract events of that day as its cause. Incremental runs recompute the transitions from the first day
-- the window can change (macros/incremental.sql, affected_from), and those of each customer the states mart
-- recomputed from an earlier day (macros/incremental_state_events.sql).

with

states as (

    select * from {{ ref('fct_customer_states_daily') }}
    where date_day >= {{ recompute_from() }}
    {{- state_rows_noted_before_affected_from(ref('fct_customer_states_daily')) }}

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

{#- The customer states' event log (fct_customer_state_events) recomputes what the states mart recomputed
    (docs/decisions/0081). Every day from affected_from(), as before, and each customer the states mart noted
    from its first noted day: a contract change or a settlement dated before the window changes a customer's
    states before affected_from(), and its transitions with them. The states mart's post-hook hands its notes on
    to this model (incremental_states.sql); this model's pre-hook deletes the noted customers' events, its
    select reads their state rows, and its post-hook consumes the notes. A note without a customer means every
    customer from its date. On Spark the log is a table rebuilt whole and nothing is noted (dispatched hooks). -#}

{#- The pre-hook: the noted customers' events from their first noted day, and every customer's from the first
    day of a note without a customer. -#}
{% macro delete_state_events_noted() -%}
    {{ return(adapter.dispatch('delete_state_events_noted')()) }}
{%- endmacro %}

{% macro default__delete_state_events_noted() -%}
    {%- if is_incremental() %}
        delete from {{ this }}
        where changed_date >= {{ everyone_noted_from(customer_notes(), 'fct_customer_state_events') }};
        {{ delete_customer_days_noted(customer_notes(), 'fct_customer_state_events', 'changed_date') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro spark__delete_state_events_noted() -%}
    select 1
{%- endmacro %}

{#- The state rows noted before affected_from() (those from it are read anyway), as more rows of the model's
    `states` import: each noted customer's from its first noted day, every customer's from the first day of a
    note without a customer. Nothing outside an incremental run on DuckDB. -#}
{% macro state_rows_noted_before_affected_from(states) -%}
    {%- if is_incremental() and target.type != 'spark' %}
        {%- set everyone = everyone_noted_from(customer_notes(), 'fct_customer_state_events') %}
        union all
        select states_noted.*
        from {{ states }} as states_noted
        inner join {{ customer_days_noted(customer_notes(), 'fct_customer_state_events') }} as noted
            on states_noted.customer_id = noted.customer_id and states_noted.date_day >= noted.from_day
        where states_noted.date_day < least({{ affected_from() }}, {{ everyone }})
        union all
        select *
        from {{ states }}
        where date_day >= {{ everyone }} and date_day < {{ affected_from() }}
    {%- endif -%}
{%- endmacro %}

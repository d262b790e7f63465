{#- The customer health score (fct_customer_health_daily) is incremental on DuckDB (docs/decisions/0072). A row
    (customer, day) reads the customer's states that day, its usage in the trend and monthly windows ending
    that day and its seat changes up to that day. The states change only for the customer-days the states
    mart recomputed, which it notes for this mart (incremental_states.sql, decision 0081), but the usage can
    restate any day: a late event restates its day, a device that
    signs in attributes its anonymous events of every date, a user or an account that moves re-keys all their
    days. So the mart keeps the usage inputs it was built from, per customer and day, in the ledger
    (pipeline.health_usage_seen, written by its post-hook in the same transaction as its rows); a run compares
    them with the inputs as they are now, notes each customer whose inputs differ from the first day they differ
    (with the states mart's notes), and recomputes the customer-days noted; its key test reads them too
    (decision 0083). A full refresh, or a first build without the kept inputs, recomputes every row; on Spark the
    mart is a table rebuilt whole and nothing is kept. -#}

{#- The usage inputs of the score per customer and day, as the usage models hold them now: the usage events,
    the users (sorted), and the seats assigned less those revoked. -#}
{% macro health_usage_inputs() -%}
    (
        select
            coalesce(used.customer_id, seats.customer_id) as customer_id,
            coalesce(used.date_day, seats.date_day) as date_day,
            coalesce(used.usage_events, 0) as usage_events,
            used.users,
            coalesce(seats.seat_change, 0) as seat_change
        from (
            select
                customer_id,
                date_day,
                sum(usage_events) as usage_events,
                list(user_id order by user_id) as users
            from (
                select
                    customer_id,
                    event_date as date_day,
                    user_id,
                    sum(usage_events) as usage_events
                from {{ ref('int_usage_known_daily') }}
                group by 1, 2, 3
            ) as per_user
            group by 1, 2
        ) as used
        full outer join (
            select
                customer_id,
                event_date as date_day,
                sum(seats_assigned - seats_revoked) as seat_change
            from {{ ref('int_usage_seat_changes_daily') }}
            group by 1, 2
        ) as seats
            on used.customer_id = seats.customer_id and used.date_day = seats.date_day
    )
{%- endmacro %}

{#- The first day from which each customer's usage inputs differ from those the mart was built from (`seen`):
    a day added, removed or changed restates that day and every later one (the seats are a sum over all
    history). -#}
{% macro health_usage_changed_from(seen) -%}
    (
        select
            coalesce(now_.customer_id, seen.customer_id) as customer_id,
            min(coalesce(now_.date_day, seen.date_day)) as from_day
        from {{ health_usage_inputs() }} as now_
        full outer join {{ seen }} as seen
            on now_.customer_id = seen.customer_id and now_.date_day = seen.date_day
        where
            now_.customer_id is null
            or seen.customer_id is null
            or now_.usage_events != seen.usage_events
            or now_.users is distinct from seen.users
            or now_.seat_change != seen.seat_change
        group by 1
    )
{%- endmacro %}

{#- Restricts the daily states the mart reads (`select * from` them, unfiltered, before it) to the customer-days
    to recompute, in incremental runs only: those noted for the mart since its last build (the notes, by the
    states mart for the customer-days whose states it recomputed, decision 0081, and by this mart's pre-hook for
    each customer whose usage inputs changed, from the first day they changed; a note without a customer names
    every customer from its date); every row when the inputs of the last build were not kept or no notes exist.
    Two selects rather than one condition with an `or`: the date's bound alone lets DuckDB skip the table's
    older blocks. -#}
{% macro only_health_days_to_recompute(states) -%}
    {%- set seen = ledger_relation('health_usage_seen') if is_incremental() else none -%}
    {%- set notes = ledger_relation('customers_to_recompute') if is_incremental() else none -%}
    {%- if seen is not none and notes is not none %}
        where date_day >= {{ everyone_noted_from(notes, 'fct_customer_health_daily') }}
        union all
        select recomputed.*
        from {{ states }} as recomputed
        inner join {{ customer_days_noted(notes, 'fct_customer_health_daily') }} as changed
            on recomputed.customer_id = changed.customer_id and recomputed.date_day >= changed.from_day
        where recomputed.date_day < {{ everyone_noted_from(notes, 'fct_customer_health_daily') }}
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook, in the transaction that writes the rows: notes for the mart each customer whose usage inputs
    changed, from the first day they changed (so the model, the deletes and the record of the rows untested read
    one set of customer-days, computed once); notes the customer-days it recomputes as untested
    (macros/rows_untested.sql, decision 0083); deletes the rows of the noted customer-days, so a day whose
    customer no longer has a live or paused contract loses its score (the strategy's delete+insert replaces the
    rest). Every row when the inputs of the last build were not kept or no notes exist. -#}
{% macro delete_health_days_noted() -%}
    {{ return(adapter.dispatch('delete_health_days_noted')()) }}
{%- endmacro %}

{% macro default__delete_health_days_noted() -%}
    {%- set seen = ledger_relation('health_usage_seen') if is_incremental() else none -%}
    {%- set notes = ledger_relation('customers_to_recompute') if is_incremental() else none -%}
    {%- if not is_incremental() -%}
        {{ note_customer_days_untested(none) }}
    {%- elif notes is none or seen is none -%}
        {{ note_customer_days_untested(none) }};
        delete from {{ this }}
    {%- else -%}
        insert into {{ notes }}
        select customer_id, from_day, 'fct_customer_health_daily' as model, now() as noted_at
        from {{ health_usage_changed_from(seen) }};
        {{ note_customer_days_untested(notes, 'fct_customer_health_daily') }};
        delete from {{ this }} where date_day >= {{ everyone_noted_from(notes, 'fct_customer_health_daily') }};
        {{ delete_customer_days_noted(notes, 'fct_customer_health_daily') }}
    {%- endif -%}
{%- endmacro %}

{#- The post-hook: the usage inputs this build's rows were computed from, kept for the next build; the states
    mart's notes to it consumed. -#}
{% macro keep_health_usage_inputs() -%}
    {{ return(adapter.dispatch('keep_health_usage_inputs')()) }}
{%- endmacro %}

{% macro default__keep_health_usage_inputs() -%}
    create schema if not exists {{ this.database }}.pipeline;
    create or replace table {{ this.database }}.pipeline.health_usage_seen as
    select * from {{ health_usage_inputs() }};
    {{ default__consume_customer_notes() }}
{%- endmacro %}

{% macro spark__keep_health_usage_inputs() -%}
    select 1
{%- endmacro %}

{#- The customer states (fct_customer_states_daily) are incremental on DuckDB by the customers whose inputs
    changed (docs/decisions/0081). A customer's rows depend only on the customer being known (dim_customers), its
    contracts' status spells, its invoices' due and settled dates (through the bill-to -> customer resolution),
    the dates (dim_dates) and the definitions in force per period (the registry's state rules and the seed
    registry_definition_periods). So the mart keeps the inputs it was built from in pipeline.states_inputs_seen
    (per customer) and pipeline.states_rules_seen (the rules and the dates), written by its post-hook in the
    transaction that writes its rows. Its pre-hook compares them with the inputs as they are now and notes in
    pipeline.customers_to_recompute what to recompute: each customer whose inputs differ, from the first day
    they can change its rows (or affected_from(), if earlier), and every customer from the first date the last
    build did not cover (the days dim_dates added); every customer from the first date when the rules or the
    first date changed, or when no inputs were kept. It deletes the noted rows, the model recomputes them, and
    the post-hook hands the notes on to fct_customer_health_daily, fct_customer_state_events and
    int_kpis_customers_counted, which consume them (incremental_health.sql, incremental_state_events.sql,
    incremental_counts.sql).
    A note without a customer means every customer from its date. On Spark the mart is a table rebuilt whole and
    nothing is kept or noted (dispatched hooks). -#}

{#- The notes' table, created by the first hook that writes to it. -#}
{% macro customer_notes() -%}
    {{ return(pipeline_table(
        'customers_to_recompute', 'customer_id varchar, from_date date, model varchar, noted_at timestamp with time zone'
    )) }}
{%- endmacro %}

{#- A post-hook of a model the states mart hands its notes to: its notes, followed, consumed (after a full build
    too: it recomputed everything). -#}
{% macro consume_customer_notes() -%}
    {{ return(adapter.dispatch('consume_customer_notes')()) }}
{%- endmacro %}

{% macro default__consume_customer_notes() -%}
    delete from {{ customer_notes() }} where model = '{{ this.name }}'
{%- endmacro %}

{% macro spark__consume_customer_notes() -%}
    select 1
{%- endmacro %}

{#- The state inputs per customer as the models hold them now, one row each: the customer ('customer'), each
    status spell of its contracts ('spell': from, to, status, live) and each of its invoices ('invoice': due,
    settled). -#}
{% macro states_inputs() -%}
    (
        select
            'customer' as input,
            customer_id,
            cast(null as date) as from_date,
            cast(null as date) as to_date,
            cast(null as varchar) as status,
            cast(null as boolean) as is_live
        from {{ ref('dim_customers') }}
        union all
        select
            'spell' as input,
            customer_id,
            valid_from_date,
            valid_to_date,
            status,
            is_live
        from {{ ref('int_contracts_status_spells') }}
        union all
        select
            'invoice' as input,
            bill_to.customer_id,
            settled.due_date,
            settled.settled_date,
            null,
            null
        from {{ ref('int_invoices_settled') }} as settled
        inner join {{ ref('int_bill_to_customers_resolved') }} as bill_to
            on settled.bill_to_id = bill_to.bill_to_id
    )
{%- endmacro %}

{#- The rules every row is judged by, and the dates: the registry's state conditions as rendered, the definition
    periods, the first and last date. -#}
{% macro states_rules() -%}
    (
        select
            '{{ customer_state_case("period") | replace("'", "''") }}' || '|' || (
                select string_agg(cast(periods as varchar), '|' order by cast(periods as varchar))
                from {{ ref('registry_definition_periods') }} as periods
            ) as rules,
            min(date_day) as first_date,
            max(date_day) as last_date
        from {{ ref('dim_dates') }}
    )
{%- endmacro %}

{#- The pre-hook: notes what to recompute (the comparison above), then deletes those rows. Every customer from
    the first date in a full build (nothing to delete) and when no inputs were kept. -#}
{% macro note_and_delete_customer_states() -%}
    {{ return(adapter.dispatch('note_and_delete_customer_states')()) }}
{%- endmacro %}

{% macro default__note_and_delete_customer_states() -%}
    {%- set model = 'fct_customer_states_daily' -%}
    {%- set seen = ledger_relation('states_inputs_seen') if is_incremental() else none -%}
    {%- set rules_seen = ledger_relation('states_rules_seen') if is_incremental() else none -%}
    {%- if seen is none or rules_seen is none %}
        insert into {{ customer_notes() }} values (null, cast('1900-01-01' as date), '{{ model }}', now());
    {%- else %}
        insert into {{ customer_notes() }}
        with
        now_ as (select * from {{ states_inputs() }}),
        seen as (select * from {{ seen }}),
        -- the rows in one and not the other (as many times as they are more in one; a group by of both is
        -- cheaper than two `except all`)
        differ as (
            select input, customer_id, from_date, to_date, status, is_live
            from (
                select *, 1 as side from now_
                union all
                select *, -1 as side from seen
            ) as both_
            group by all
            having sum(side) != 0
        ),
        -- an invoice makes its customer delinquent from the day after its due date plus the days past due
        earliest_grace as (
            select least(0, min(delinquency_days)) as days from {{ ref('registry_definition_periods') }}
        )
        select
            differ.customer_id,
            least(
                {{ affected_from() }},
                min(
                    case differ.input
                        when 'customer' then cast('1900-01-01' as date)
                        when 'spell' then differ.from_date
                        else cast(differ.from_date + earliest_grace.days as date)
                    end
                )
            ) as from_date,
            '{{ model }}' as model,
            now() as noted_at
        from differ, earliest_grace
        where differ.customer_id is not null
        group by 1;
        insert into {{ customer_notes() }}
        select
            null as customer_id,
            from_date,
            '{{ model }}' as model,
            now() as noted_at
        from (
            select
                now_.last_date,
                case
                    when
                        now_.rules = seen.rules
                        and now_.first_date = seen.first_date
                        and now_.last_date >= seen.last_date
                        then cast(seen.last_date + interval 1 day as date)
                    else cast('1900-01-01' as date)
                end as from_date
            from {{ states_rules() }} as now_, {{ rules_seen }} as seen
        ) as dates_added
        -- none when the dates are those of the last build
        where from_date <= last_date;
    {%- endif %}
    {%- if is_incremental() %}
        delete from {{ this }}
        where date_day >= (
            select min(from_date) from {{ customer_notes() }} where model = '{{ model }}' and customer_id is null
        );
        {{ delete_customer_days_noted(customer_notes(), model) }}
    {%- endif -%}
{%- endmacro %}

{% macro spark__note_and_delete_customer_states() -%}
    select 1
{%- endmacro %}

{#- Each customer noted for `model` in `notes` and the first day noted (`from_day`). -#}
{% macro customer_days_noted(notes, model) -%}
    (
        select customer_id, min(from_date) as from_day
        from {{ notes }}
        where model = '{{ model }}' and customer_id is not null
        group by 1
    )
{%- endmacro %}

{#- The first day from which every customer is recomputed for `model`: the earliest note without a customer
    (none: a date after every day). -#}
{% macro everyone_noted_from(notes, model) -%}
    (
        select coalesce(min(from_date), cast('9999-12-31' as date))
        from {{ notes }}
        where model = '{{ model }}' and customer_id is null
    )
{%- endmacro %}

{#- Deletes this model's rows of each customer noted for `model` in `notes`, from the first day noted (of
    `date_column`). -#}
{% macro delete_customer_days_noted(notes, model, date_column='date_day') -%}
    delete from {{ this }}
    using {{ customer_days_noted(notes, model) }} as noted
    where {{ this }}.customer_id = noted.customer_id and {{ this }}.{{ date_column }} >= noted.from_day
{%- endmacro %}

{#- The customers the model computes and the first day of each: the noted ones in an incremental run (a note
    without a customer names every customer), every customer from the first date otherwise. -#}
{% macro customers_to_recompute(customers) -%}
    {%- if is_incremental() and target.type != 'spark' -%}
        (
            select customer_id, min(from_date) as from_date
            from (
                select customer_id, from_date
                from {{ customer_notes() }}
                where model = 'fct_customer_states_daily' and customer_id is not null
                union all
                select customers.customer_id, everyone.from_date
                from {{ customers }} as customers, (
                    select min(from_date) as from_date
                    from {{ customer_notes() }}
                    where model = 'fct_customer_states_daily' and customer_id is null
                    having count(*) > 0
                ) as everyone
            ) as noted
            group by 1
        )
    {%- else -%}
        (select customer_id, cast('1900-01-01' as date) as from_date from {{ customers }})
    {%- endif -%}
{%- endmacro %}

{#- The customers noted for the states mart, as a subquery. -#}
{% macro customers_noted() -%}
    (
        select customer_id from {{ customer_notes() }}
        where model = 'fct_customer_states_daily' and customer_id is not null
    )
{%- endmacro %}

{#- The post-hook: the inputs this build's rows were computed from, kept for the next build (those of the noted
    customers replaced, in an incremental build); the notes handed on to the health mart and the states' event
    log (every customer after a full build) and consumed. -#}
{% macro keep_states_inputs() -%}
    {{ return(adapter.dispatch('keep_states_inputs')()) }}
{%- endmacro %}

{% macro default__keep_states_inputs() -%}
    {%- set model = 'fct_customer_states_daily' -%}
    {%- set seen = ledger_relation('states_inputs_seen') if is_incremental() else none -%}
    {%- if seen is none %}
        create or replace table {{ this.database }}.pipeline.states_inputs_seen as
        select * from {{ states_inputs() }};
    {%- else %}
        -- only the noted customers' inputs differ from those kept (the pre-hook noted every one that differs)
        delete from {{ seen }} where customer_id in {{ customers_noted() }};
        insert into {{ seen }}
        select * from {{ states_inputs() }} as inputs
        where inputs.customer_id in {{ customers_noted() }};
    {%- endif %}
    create or replace table {{ this.database }}.pipeline.states_rules_seen as
    select * from {{ states_rules() }};
    {%- for next_model in ['fct_customer_health_daily', 'fct_customer_state_events', 'int_kpis_customers_counted'] %}
        {%- if is_incremental() %}
            insert into {{ customer_notes() }}
            select customer_id, from_date, '{{ next_model }}' as model, now() as noted_at
            from {{ customer_notes() }}
            where model = '{{ model }}';
        {%- else %}
            insert into {{ customer_notes() }}
            values (null, cast('1900-01-01' as date), '{{ next_model }}', now());
        {%- endif %}
    {%- endfor %}
    delete from {{ customer_notes() }} where model = '{{ model }}'
{%- endmacro %}

{% macro spark__keep_states_inputs() -%}
    select 1
{%- endmacro %}

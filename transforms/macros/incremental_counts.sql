{#- The counted KPIs per day (int_kpis_customers_counted, int_kpis_funnel_counted) are incremental on DuckDB by
    the days a build can change (docs/decisions/0089): rebuilt whole, their cost grew with history (the customer
    counts group every customer-day of fct_customer_states_daily, the funnel every person of int_people_qualified).
    Each model recomputes its days from the first one its inputs changed since it last ran, and notes that day in
    pipeline.kpi_days_to_recompute for kpi_daily, which recomputes from it (with the money's day,
    macros/incremental_money.sql) and consumes the notes; a model reads its own notes kpi_daily has not followed
    yet too, so a build that stops between them loses nothing.
    - The customer counts of a day are the states of that day: the states mart notes, for each customer it
      recomputes, the first day (every customer from the days dim_dates added, every customer from the first
      date when its rules change or in its full build; macros/incremental_states.sql), and hands those notes on to
      this model as to the health mart and the state events. The first of them is the first day to recount.
    - The funnel of a day counts the people whose first MQL or SQL day it is, under the period in force, and the
      opportunities won that day. int_people_qualified hands the notes of the people it recomputed on to the
      funnel (every person after its full build; macros/incremental_people.sql). The funnel keeps the days of
      the people it counted (pipeline.funnel_people_seen: the rows with an MQL or SQL day) and the definition
      periods (pipeline.funnel_periods_seen); its pre-hook compares the noted people's days as kept with their
      days now (a multiset group by, decision 0081), the periods, and the days' won opportunities (27,000 at
      SF 10, recounted whole) with the rows it holds, and recomputes from the first day any differs.
    A full build recomputes (and notes) every day, and so does the funnel's first build without kept inputs (the
    first build after this change: kpi_daily then recomputes every day once; the customer counts, rebuilt whole
    before, need only the states' notes from then). On Spark the models are tables rebuilt whole and nothing is kept or noted (dispatched hooks). -#}

{#- The notes' table: the first day each counted model recomputed, until kpi_daily follows it. -#}
{% macro kpi_count_notes() -%}
    {{ return(pipeline_table(
        'kpi_days_to_recompute', 'from_date date, model varchar, noted_at timestamp with time zone'
    )) }}
{%- endmacro %}

{#- The first day `model` recomputes: the first day noted for it (by this build's pre-hook and by earlier builds
    kpi_daily has not followed), none if nothing was noted; every day in a full build. -#}
{% macro count_days_from(model) -%}
    {%- if is_incremental() and target.type != 'spark' -%}
        (select min(from_date) from {{ kpi_count_notes() }} where model = '{{ model }}')
    {%- else -%}
        cast('1900-01-01' as date)
    {%- endif -%}
{%- endmacro %}

{#- Deletes the model's rows from the first day it recomputes (an incremental run's pre-hook, after the note). -#}
{% macro delete_count_days(model) -%}
    {%- if is_incremental() %}
        delete from {{ this }} where date_day >= {{ count_days_from(model) }}
    {%- else %}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Notes every day for `model`, for kpi_daily (a full build, or the funnel's first build without kept inputs:
    the first build after this change, so kpi_daily recomputes every day once). -#}
{% macro note_every_count_day(model) -%}
    insert into {{ kpi_count_notes() }} values (cast('1900-01-01' as date), '{{ model }}', now())
{%- endmacro %}

{#- int_kpis_customers_counted's pre-hook: the first day the states mart noted for it, then the delete. -#}
{% macro note_and_delete_customer_count_days() -%}
    {{ return(adapter.dispatch('note_and_delete_customer_count_days')()) }}
{%- endmacro %}

{% macro default__note_and_delete_customer_count_days() -%}
    {%- set model = 'int_kpis_customers_counted' -%}
    {%- if not is_incremental() %}
        {{ note_every_count_day(model) }};
    {%- else %}
        insert into {{ kpi_count_notes() }}
        select
            min(from_date),
            '{{ model }}',
            now()
        from {{ customer_notes() }}
        where model = '{{ model }}'
        having count(*) > 0;
    {%- endif %}
    {{ delete_count_days(model) }}
{%- endmacro %}

{% macro spark__note_and_delete_customer_count_days() -%}
    select 1
{%- endmacro %}

{#- int_kpis_customers_counted's post-hook: the states mart's notes to it, followed, consumed. -#}
{% macro consume_customer_count_notes() -%}
    {{ return(adapter.dispatch('consume_customer_count_notes')()) }}
{%- endmacro %}

{% macro default__consume_customer_count_notes() -%}
    delete from {{ customer_notes() }} where model = 'int_kpis_customers_counted'
{%- endmacro %}

{% macro spark__consume_customer_count_notes() -%}
    select 1
{%- endmacro %}

{#- int_people_qualified's post-hook (before it consumes its own notes): the people it recomputed, noted for the
    funnel; every person after its full build. -#}
{% macro note_people_for_the_funnel() -%}
    {{ return(adapter.dispatch('note_people_for_the_funnel')()) }}
{%- endmacro %}

{% macro default__note_people_for_the_funnel() -%}
    {%- if is_incremental() -%}
        insert into {{ people_notes() }}
        select distinct
            email,
            'int_kpis_funnel_counted' as model,
            now() as noted_at
        from {{ people_notes() }}
        where model = 'int_people_qualified'
    {%- else -%}
        insert into {{ people_notes() }} values (null, 'int_kpis_funnel_counted', now())
    {%- endif -%}
{%- endmacro %}

{% macro spark__note_people_for_the_funnel() -%}
    select 1
{%- endmacro %}

{#- The people rows the funnel counts: those with an MQL or SQL day. -#}
{% macro funnel_people() -%}
    (
        select
            email,
            period,
            mql_date,
            sql_date
        from {{ ref('int_people_qualified') }}
        where mql_date is not null or sql_date is not null
    )
{%- endmacro %}

{#- Whether a person's rows are to be compared and kept again: noted for the funnel, or every person noted. -#}
{% macro noted_for_the_funnel(email) -%}
    (
        {{ email }} in (select email from {{ people_notes() }} where model = 'int_kpis_funnel_counted')
        or exists (select 1 from {{ people_notes() }} where model = 'int_kpis_funnel_counted' and email is null)
    )
{%- endmacro %}

{#- int_kpis_funnel_counted's pre-hook: notes the first day any input changed (the comparison above; every day in
    a full build or without kept inputs), then deletes the rows from it. -#}
{% macro note_and_delete_funnel_days() -%}
    {{ return(adapter.dispatch('note_and_delete_funnel_days')()) }}
{%- endmacro %}

{% macro default__note_and_delete_funnel_days() -%}
    {%- set model = 'int_kpis_funnel_counted' -%}
    {%- set seen = ledger_relation('funnel_people_seen') if is_incremental() else none -%}
    {%- set periods_seen = ledger_relation('funnel_periods_seen') if is_incremental() else none -%}
    {%- if seen is none or periods_seen is none %}
        {{ note_every_count_day(model) }};
    {%- else %}
        insert into {{ kpi_count_notes() }}
        select
            min(from_date),
            '{{ model }}',
            now()
        from (
            -- the people's rows in one and not the other, from their first day (least() skips a null)
            select least(mql_date, sql_date) as from_date
            from (
                select
                    *,
                    1 as side
                from {{ funnel_people() }} as people
                where {{ noted_for_the_funnel('people.email') }}
                union all
                select
                    *,
                    -1 as side
                from {{ seen }} as seen
                where {{ noted_for_the_funnel('seen.email') }}
            ) as both_
            group by email, period, mql_date, sql_date
            having sum(side) != 0
            union all
            -- the definition periods whose days changed, from their first day
            select effective_from
            from (
                select
                    period,
                    effective_from,
                    effective_to,
                    1 as side
                from {{ ref('registry_definition_periods') }}
                union all
                select
                    period,
                    effective_from,
                    effective_to,
                    -1 as side
                from {{ periods_seen }}
            ) as both_
            group by period, effective_from, effective_to
            having sum(side) != 0
            union all
            -- the days whose won opportunities differ from the rows held
            select coalesce(won.date_day, held.date_day)
            from (
                select
                    closed_date as date_day,
                    count(*) as value
                from {{ ref('fct_opportunities') }}
                where is_won
                group by 1
            ) as won
            full outer join (
                select
                    date_day,
                    value
                from {{ this }}
                where kpi_name = 'opportunities_won'
            ) as held on won.date_day = held.date_day
            where won.value is distinct from held.value
        ) as changed
        having min(from_date) is not null;
    {%- endif %}
    {{ delete_count_days(model) }}
{%- endmacro %}

{% macro spark__note_and_delete_funnel_days() -%}
    select 1
{%- endmacro %}

{#- int_kpis_funnel_counted's post-hook: the noted people's days kept (every person's in a full build, without
    kept inputs, or when every person was noted), the periods kept, the people's notes to it consumed. -#}
{% macro keep_funnel_inputs() -%}
    {{ return(adapter.dispatch('keep_funnel_inputs')()) }}
{%- endmacro %}

{% macro default__keep_funnel_inputs() -%}
    {%- set seen = ledger_relation('funnel_people_seen') if is_incremental() else none -%}
    {%- if seen is none %}
        create or replace table {{ this.database }}.pipeline.funnel_people_seen as
        select * from {{ funnel_people() }};
    {%- else %}
        delete from {{ seen }} where {{ noted_for_the_funnel('email') }};
        insert into {{ seen }}
        select * from {{ funnel_people() }} as people
        where {{ noted_for_the_funnel('people.email') }};
    {%- endif %}
    create or replace table {{ this.database }}.pipeline.funnel_periods_seen as
    select
        period,
        effective_from,
        effective_to
    from {{ ref('registry_definition_periods') }};
    delete from {{ people_notes() }} where model = 'int_kpis_funnel_counted'
{%- endmacro %}

{% macro spark__keep_funnel_inputs() -%}
    select 1
{%- endmacro %}

{#- kpi_daily's first day to recompute: the money's (kpis_recompute_from()) or the first day a counted model
    noted, if earlier (every day in a full build). -#}
{% macro kpi_days_from() -%}
    {%- if not is_incremental() or target.type == 'spark' -%}
        {{ kpis_recompute_from() }}
    {%- else -%}
        least(
            {{ kpis_recompute_from() }},
            coalesce((select min(from_date) from {{ kpi_count_notes() }}), {{ kpis_recompute_from() }})
        )
    {%- endif -%}
{%- endmacro %}

{#- kpi_daily's pre-hook: deletes its rows from the first day it recomputes. -#}
{% macro delete_kpi_days_noted() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where date_day >= {{ kpi_days_from() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- kpi_daily's post-hook: the counted models' notes followed, consumed. -#}
{% macro consume_kpi_count_notes() -%}
    {{ return(adapter.dispatch('consume_kpi_count_notes')()) }}
{%- endmacro %}

{% macro default__consume_kpi_count_notes() -%}
    delete from {{ kpi_count_notes() }}
{%- endmacro %}

{% macro spark__consume_kpi_count_notes() -%}
    select 1
{%- endmacro %}

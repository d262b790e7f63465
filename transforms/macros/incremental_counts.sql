{#- The customer counts per day (int_kpis_customers_counted) are incremental on DuckDB by the days the states mart
    recomputed (docs/decisions/0089): rebuilt whole, they grouped every customer-day of fct_customer_states_daily,
    a cost that grew with history. A day's counts are that day's states. The states mart notes, for each customer
    it recomputes, the first day (every customer from the days dim_dates added, every customer from the first
    date when its rules change or in its full build; macros/incremental_states.sql) and hands those notes on to
    this model as to the health mart and the state events: it recounts the days from the first one noted to it,
    and consumes the notes. The funnel counts (int_kpis_funnel_counted) stay a table rebuilt whole: following
    their people cost more than recounting them (decision 0089).
    kpi_daily follows both by comparison: it recomputes from the first day a counted KPI it holds differs from the
    counts (or from the money's first day, macros/incremental_money.sql, if earlier), noted by its pre-hook in
    pipeline.kpi_days_to_recompute so that its delete and its select read the same day. On Spark the models are
    tables rebuilt whole and nothing is noted (dispatched hooks). -#}

{#- The first day the customer counts recount: the first day the states mart noted to them, none if nothing was
    noted; every day in a full build. -#}
{% macro customer_count_days_from() -%}
    {%- if is_incremental() and target.type != 'spark' -%}
        (select min(from_date) from {{ customer_notes() }} where model = 'int_kpis_customers_counted')
    {%- else -%}
        cast('1900-01-01' as date)
    {%- endif -%}
{%- endmacro %}

{#- int_kpis_customers_counted's pre-hook: deletes the days it recounts. -#}
{% macro delete_customer_count_days() -%}
    {%- if is_incremental() and target.type != 'spark' -%}
        delete from {{ this }} where date_day >= {{ customer_count_days_from() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- kpi_daily's notes: the first day its counted KPIs differed from the counts, until it has recomputed. -#}
{% macro kpi_count_notes() -%}
    {{ return(pipeline_table('kpi_days_to_recompute', 'from_date date, noted_at timestamp with time zone')) }}
{%- endmacro %}

{#- The counted KPIs as the counts hold them now, one row per day and KPI, as kpi_daily writes them. -#}
{% macro counted_kpis() -%}
    (
        select
            date_day,
            kpi_name,
            cast(value as decimal(38, 2)) as value
        from {{ ref('int_kpis_customers_counted') }}
        unpivot (value for kpi_name in (active_customers, new_customers, churned_customers, delinquent_customers))
        union all
        select
            date_day,
            kpi_name,
            cast(value as decimal(38, 2)) as value
        from {{ ref('int_kpis_funnel_counted') }}
    )
{%- endmacro %}

{#- kpi_daily's first day to recompute: the money's (kpis_recompute_from()) or the first day noted, if earlier
    (every day in a full build). -#}
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

{#- kpi_daily's pre-hook: notes the first day a counted KPI it holds differs from the counts (a day the counts do
    not hold counts 0, as kpi_daily's select counts it), then deletes its rows from the first day it recomputes. -#}
{% macro note_and_delete_kpi_days() -%}
    {{ return(adapter.dispatch('note_and_delete_kpi_days')()) }}
{%- endmacro %}

{% macro default__note_and_delete_kpi_days() -%}
    {%- if is_incremental() %}
        insert into {{ kpi_count_notes() }}
        select
            min(held.date_day),
            now()
        from {{ this }} as held
        left join {{ counted_kpis() }} as counted
            on held.date_day = counted.date_day and held.kpi_name = counted.kpi_name
        where
            held.kpi_name in (select counted_names.kpi_name from {{ counted_kpis() }} as counted_names)
            and held.value != coalesce(counted.value, 0)
        having min(held.date_day) is not null;
        delete from {{ this }} where date_day >= {{ kpi_days_from() }}
    {%- else %}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro spark__note_and_delete_kpi_days() -%}
    select 1
{%- endmacro %}

{#- kpi_daily's post-hook: its note, followed, consumed. -#}
{% macro consume_kpi_count_notes() -%}
    {{ return(adapter.dispatch('consume_kpi_count_notes')()) }}
{%- endmacro %}

{% macro default__consume_kpi_count_notes() -%}
    delete from {{ kpi_count_notes() }}
{%- endmacro %}

{% macro spark__consume_kpi_count_notes() -%}
    select 1
{%- endmacro %}

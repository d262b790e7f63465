{#- The money KPIs per day (int_kpis_money_summed) are incremental on DuckDB by the days a run can change
    (docs/decisions/0083): rebuilt whole, their cost grew with history (the monthly recurring revenue and the
    pipeline are a range join of every contract's live spells and every opportunity with every day). A day's
    money reads the documents dated that day (invoices, payments, credit memos, journal lines: affected_from()
    finds the first day the window's documents change, decision 0006), the open receivables up to it, and the
    contracts, their live spells, the opportunities and the rates in force that day. Those last change without a
    document in the window (a contract amended or deleted, a status change loaded late, an opportunity re-valued),
    so the model keeps them as it read them, in pipeline.money_inputs_seen (its post-hook, in the transaction that
    writes its rows); its pre-hook compares them with the inputs as they are now and notes the first day any
    difference can change (an input's first day: a spell's start, a booking's signature, an opportunity's
    creation, a rate's day), or affected_from() if earlier, in pipeline.money_days_to_recompute, deletes the
    rows from that day, and the model recomputes them. The note is kpi_daily's too: it recomputes from it
    (kpis_recompute_from(), with the counts' note: macros/incremental_counts.sql) and consumes it, so a day the
    money restated reaches the KPIs even when kpi_daily ran in a later build. A full build, or a first build without the kept inputs, notes every day. On Spark the
    model is a table rebuilt whole and nothing is kept or noted (dispatched hooks). -#}

{#- The notes' table: the first day to recompute, per build of the money model that kpi_daily has not yet
    followed. -#}
{% macro money_notes() -%}
    {{ return(pipeline_table('money_days_to_recompute', 'from_date date, noted_at timestamp with time zone')) }}
{%- endmacro %}

{#- The inputs other than the documents, one row each, with the first day they count on. -#}
{% macro money_inputs() -%}
    (
        select
            'spell' as input,
            events.contract_id as id,
            events.changed_date as from_date,
            events.valid_until_date as to_date,
            contracts.currency_code,
            cast(contracts.mrr_amount as varchar) as amount
        from {{ ref('fct_contract_state_events') }} as events
        inner join {{ ref('fct_contracts') }} as contracts on events.contract_id = contracts.contract_id
        where events.to_status in ({{ sql_list(var('live_contract_states')) }})
        union all
        select
            'booking' as input,
            contract_id,
            signed_date,
            null,
            currency_code,
            cast(total_contract_value as varchar)
        from {{ ref('fct_contracts') }}
        union all
        select
            'opportunity' as input,
            opportunity_id,
            created_date,
            closed_date,
            currency_code,
            cast(amount as varchar)
        from {{ ref('fct_opportunities') }}
        union all
        select
            'rate' as input,
            null,
            rate_date,
            null,
            currency_code,
            cast(usd_per_unit as varchar)
        from {{ ref('fct_fx_rates') }}
    )
{%- endmacro %}

{#- The first day the model recomputes: every day in a full build; in an incremental run the first day noted
    (by this build's pre-hook, and by earlier builds kpi_daily has not followed yet). -#}
{% macro money_recompute_from() -%}
    {%- if is_incremental() and target.type != 'spark' -%}
        (select min(from_date) from {{ this.database }}.pipeline.money_days_to_recompute)
    {%- else -%}
        cast('1900-01-01' as date)
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook: notes the first day to recompute (every day in a full build or without kept inputs), then, in
    an incremental run, deletes the rows from that day. -#}
{% macro note_and_delete_money_days() -%}
    {{ return(adapter.dispatch('note_and_delete_money_days')()) }}
{%- endmacro %}

{% macro default__note_and_delete_money_days() -%}
    {%- set seen = ledger_relation('money_inputs_seen') if is_incremental() else none -%}
    {%- if seen is none %}
        insert into {{ money_notes() }} values (cast('1900-01-01' as date), now());
    {%- else %}
        insert into {{ money_notes() }}
        select
            least(
                {{ affected_from() }},
                coalesce(min(from_date), {{ affected_from() }})
            ),
            now()
        from (
            -- the rows in one and not the other (a group by of both is cheaper than two `except all`)
            select from_date
            from (
                select *, 1 as side from {{ money_inputs() }}
                union all
                select *, -1 as side from {{ seen }}
            ) as both_
            group by input, id, from_date, to_date, currency_code, amount
            having sum(side) != 0
        ) as differ;
    {%- endif %}
    {%- if is_incremental() %}
        delete from {{ this }} where date_day >= {{ money_recompute_from() }}
    {%- endif -%}
{%- endmacro %}

{% macro spark__note_and_delete_money_days() -%}
    select 1
{%- endmacro %}

{#- The post-hook: the inputs this build's rows were computed from, kept for the next build. -#}
{% macro keep_money_inputs() -%}
    {{ return(adapter.dispatch('keep_money_inputs')()) }}
{%- endmacro %}

{% macro default__keep_money_inputs() -%}
    create or replace table {{ this.database }}.pipeline.money_inputs_seen as
    select * from {{ money_inputs() }}
{%- endmacro %}

{% macro spark__keep_money_inputs() -%}
    select 1
{%- endmacro %}

{#- kpi_daily's first day to recompute: affected_from(), or the first day the money noted, if earlier (every day
    in a full build). The notes' table is named through money_notes(), which creates it, rather than found:
    dbt's cache of relations does not know a table created earlier in the same command. -#}
{% macro kpis_recompute_from() -%}
    {%- if not is_incremental() -%}
        cast('1900-01-01' as date)
    {%- else -%}
        least({{ affected_from() }}, coalesce((select min(from_date) from {{ money_notes() }}), {{ affected_from() }}))
    {%- endif -%}
{%- endmacro %}

{#- kpi_daily's post-hook: the money's notes followed, consumed. -#}
{% macro consume_money_notes() -%}
    {{ return(adapter.dispatch('consume_money_notes')()) }}
{%- endmacro %}

{% macro default__consume_money_notes() -%}
    delete from {{ money_notes() }}
{%- endmacro %}

{% macro spark__consume_money_notes() -%}
    select 1
{%- endmacro %}

{#- int_leads_qualified and fct_leads read, delete and note only the rows of the leads a window loaded, and
    find them without reading every lead (docs/decisions/0082). A semi join with the window's leads reads the
    whole key column of the table it filters (2.2 million leads, 7.9 million lead changes at SF 10 after two
    years). The window's leads are recent ones (a lead's changes come in the weeks after it was created, and
    the CRM numbers leads in the order it creates them), so a bound on the key by the least and the greatest
    of them (`key_within_range_of()`, macros/incremental_staging.sql) lets DuckDB skip the row groups whose
    key range holds none of them, in a table written in key order. The lead staging models,
    int_leads_qualified and fct_leads write their rows in lead order: a full build sorts them, and an
    incremental build appends the leads it recomputed after deleting their rows, so the rows of old leads stay
    in sorted row groups and the appended ones in a few row groups of recent keys. An old day's re-run bounds
    its own, older range; a bound that spans every key skips nothing and costs nothing. -#}

{#- `column` is a lead the window loaded, and within their range. -#}
{% macro lead_loaded_in_window(column) -%}
    {{ column }} in {{ leads_loaded_in_window() }}
    and {{ key_within_range_of(column, leads_loaded_in_window()) }}
{%- endmacro %}

{#- Restricts a model's rows to the leads loaded in the window and their key range, in incremental runs
    only. -#}
{% macro only_leads_in_window_range(column) -%}
    {%- if is_incremental() %}
        where {{ lead_loaded_in_window(column) }}
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of int_leads_qualified and fct_leads (their strategy is `append`): the rows of the leads
    the model recomputes are deleted first, in its transaction, through the key range, where dbt-duckdb's
    delete+insert reads every key of the table. It also deletes a lead no longer staged (a re-run that dropped
    its only version: the lead staging models noted it in the ledger's restaged_leads), which delete+insert
    left behind. -#}
{% macro delete_leads_loaded_in_window() -%}
    {{ return(adapter.dispatch('delete_leads_loaded_in_window')()) }}
{%- endmacro %}

{% macro default__delete_leads_loaded_in_window() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ lead_loaded_in_window('lead_id') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro spark__delete_leads_loaded_in_window() -%}
    select 1
{%- endmacro %}

{#- The models' closing `order by`, on DuckDB: the lead staging models, int_leads_qualified and fct_leads are
    written in lead order, so that their key range skips row groups. Spark's lead staging models are views, and
    its tables are rebuilt whole: nothing to order there. -#}
{% macro in_key_order(columns) -%}
    {{ return(adapter.dispatch('in_key_order')(columns)) }}
{%- endmacro %}

{% macro default__in_key_order(columns) -%}
    order by {{ columns }}
{%- endmacro %}

{% macro spark__in_key_order(columns) -%}
{%- endmacro %}

{#- Incremental models replace exactly what a run's window touched (see docs/decisions/0006). On Spark they
    are tables rebuilt whole on every run: its Parquet tables take no delete (docs/decisions/0038). -#}

{#- Facts loaded by source partition: a run replaces the partitions of its window. -#}
{% macro delete_loaded_window(relation) -%}
    {%- if is_incremental() -%}
        delete from {{ relation }}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The first business date whose numbers the run's data can change: the window start, or earlier when
    the window brought records dated before it (a late journal line, a re-exported payment), or a load released
    payments or credit memos from quarantine into older partitions (macros/incremental_staging.sql). -#}
{% macro affected_from() -%}
    (select least(
        {{ window_start() }},
        coalesce((select min(posting_date) from {{ ref('fct_gl_entries') }}
                  where loaded_partition between {{ window_start() }} and {{ window_end() }}), {{ window_start() }}),
        coalesce((select min(payment_date) from {{ ref('fct_payments') }}
                  where loaded_partition between {{ window_start() }} and {{ window_end() }}
                  or loaded_partition in {{ released_partitions('accounting', 'payments') }}), {{ window_start() }}),
        coalesce((select min(credit_memo_date) from {{ ref('fct_credit_memos') }}
                  where loaded_partition between {{ window_start() }} and {{ window_end() }}
                  or loaded_partition in {{ released_partitions('accounting', 'credit_memos') }}), {{ window_start() }}),
        coalesce((select min(invoice_date) from {{ ref('fct_invoices') }}
                  where loaded_partition between {{ window_start() }} and {{ window_end() }}), {{ window_start() }})
    ))
{%- endmacro %}

{#- Daily models (and event logs keyed by another date column) recompute every day from the first affected one
    (stocks carry forward). -#}
{% macro delete_affected_days(relation, date_column='date_day') -%}
    {%- if is_incremental() -%}
        delete from {{ relation }} where {{ date_column }} >= {{ affected_from() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro recompute_from() -%}
    {%- if is_incremental() -%}{{ affected_from() }}{%- else -%}cast('1900-01-01' as date){%- endif -%}
{%- endmacro %}

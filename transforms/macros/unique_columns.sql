{#- The rows that share their values of `columns` with another row: the test of a key of several columns. It
    groups by the columns themselves, where dbt's `unique` on one expression (`a || '|' || cast(b as string)`)
    built a string for every row first: on the largest tables at SF 10 (4 million customer-days) the string
    took more than half the test's time (docs/decisions/0072). Null values group together, as one value. On
    DuckDB, a model that keeps a record of its rows untested by one of the columns has only the rows of those
    keys grouped (macros/rows_untested.sql, docs/decisions/0077), and one that keeps a record of customer-days
    only the rows of those customer-days (every row after a full build: decision 0083). -#}
{% test unique_columns(model, columns) %}
    {{ adapter.dispatch('test_unique_columns')(model, columns) }}
{% endtest %}

{% macro default__test_unique_columns(model, columns) %}

    select
        {{ columns | join(', ') }},
        count(*) as n_records

    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1

{% endmacro %}

{% macro duckdb__test_unique_columns(model, columns) -%}
    {%- set key = rows_untested_key(model) -%}
    {%- if rows_untested_are_customer_days(model) and 'customer_id' in columns and 'date_day' in columns -%}
        {%- set written = rows_on_customer_days_untested(model, columns) -%}
    {%- elif key is not none and key in columns -%}
        {%- set record = rows_untested_record(model.database, model.identifier) -%}
        {%- set written -%}
            select {{ columns | join(', ') }} from {{ model }}
            where {{ in_rows_untested(key, record, key) }}
        {%- endset -%}
    {%- endif -%}
    {%- if written is defined %}
with

written as (

    {{ written | indent(4) }}

),

final as (

    select
        {{ columns | join(', ') }},
        count(*) as n_records

    from written
    group by {{ columns | join(', ') }}
    having count(*) > 1

)

select * from final
    {%- else -%}
        {{ default__test_unique_columns(model, columns) }}
    {%- endif -%}
{%- endmacro %}

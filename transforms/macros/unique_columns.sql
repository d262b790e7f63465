{#- The rows that share their values of `columns` with another row: the test of a key of several columns. It
    groups by the columns themselves, where dbt's `unique` on one expression (`a || '|' || cast(b as string)`)
    built a string for every row first: on the largest tables at SF 10 (4 million customer-days) the string
    took more than half the test's time (docs/decisions/0072). Null values group together, as one value. -#}
{% test unique_columns(model, columns) %}

    select
        {{ columns | join(', ') }},
        count(*) as n_records

    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1

{% endtest %}

{#- Money to the cent: per-currency totals converted at the day's rate, half away from zero (registry rule),
    typed decimal(38, 2) on every engine (Spark's round narrows the precision). -#}
{% macro to_usd(amount, rate) -%}
    cast(round(cast({{ amount }} as decimal(38, 2)) * cast({{ rate }} as decimal(38, 6)), 2) as decimal(38, 2))
{%- endmacro %}

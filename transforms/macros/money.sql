{#- Money to the cent: per-currency totals converted at the day's rate, half away from zero (registry rule). -#}
{% macro to_usd(amount, rate) -%}
    round(cast({{ amount }} as decimal(38, 2)) * cast({{ rate }} as decimal(38, 6)), 2)
{%- endmacro %}

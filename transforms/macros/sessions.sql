{#- What the usage sessions need that DuckDB and Spark SQL spell differently (see engine.sql). -#}

{#- Milliseconds since the epoch of a timestamp, as a bigint. -#}
{% macro epoch_millis(expr) -%}
    {{ return(adapter.dispatch('epoch_millis')(expr)) }}
{%- endmacro %}
{% macro default__epoch_millis(expr) -%}
    epoch_ms({{ expr }})
{%- endmacro %}
{% macro spark__epoch_millis(expr) -%}
    unix_millis({{ expr }})
{%- endmacro %}

{#- The exact median of a group (the mean of the two middle values of an even count), as a double. -#}
{% macro median_of(expr) -%}
    {{ return(adapter.dispatch('median_of')(expr)) }}
{%- endmacro %}
{% macro default__median_of(expr) -%}
    percentile_cont(0.5) within group (order by {{ expr }})
{%- endmacro %}
{% macro spark__median_of(expr) -%}
    percentile({{ expr }}, 0.5)
{%- endmacro %}

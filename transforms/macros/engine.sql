{#- What DuckDB and Spark SQL spell differently (docs/deployment.md): one macro per construct, dispatched on
    the target's adapter, so that every model is written once. Forms both engines accept (max_by, the
    standard unpivot, string casts) need no macro and are written directly in the models. -#}

{#- Every column but some: DuckDB's `* exclude`, Spark's `* except` (which DuckDB also takes, but the linter's
    DuckDB dialect does not). -#}
{% macro star_except(columns) -%}
    {{ return(adapter.dispatch('star_except')(columns)) }}
{%- endmacro %}
{% macro default__star_except(columns) -%}
    * exclude ({{ columns }})
{%- endmacro %}
{% macro spark__star_except(columns) -%}
    * except ({{ columns }})
{%- endmacro %}

{#- Every match replaced. DuckDB replaces the first one unless given 'g'; Spark replaces all, reads a fourth
    argument as a position, and unescapes backslashes in literals (so '\s' would reach the regex as 's'). -#}
{% macro regexp_replace_all(expr, pattern, replacement) -%}
    {{ return(adapter.dispatch('regexp_replace_all')(expr, pattern, replacement)) }}
{%- endmacro %}
{% macro default__regexp_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}
{% macro spark__regexp_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern | replace("\\", "\\\\") }}', '{{ replacement }}')
{%- endmacro %}

{#- One row per day from start to stop, as a from-clause item with the column date_day. -#}
{% macro day_series(start, stop) -%}
    {{ return(adapter.dispatch('day_series')(start, stop)) }}
{%- endmacro %}
{% macro default__day_series(start, stop) -%}
    (select cast(generated as date) as date_day
     from generate_series({{ start }}, {{ stop }}, interval 1 day) as series (generated)) as days
{%- endmacro %}
{% macro spark__day_series(start, stop) -%}
    lateral (select explode(sequence({{ start }}, {{ stop }}, interval 1 day)) as date_day) as days
{%- endmacro %}

{#- Day of the week, 0 = Sunday to 6 = Saturday, a bigint (DuckDB's; Spark's dayofweek counts 1 to 7, an int). -#}
{% macro day_of_week(expr) -%}
    {{ return(adapter.dispatch('day_of_week')(expr)) }}
{%- endmacro %}
{% macro default__day_of_week(expr) -%}
    dayofweek({{ expr }})
{%- endmacro %}
{% macro spark__day_of_week(expr) -%}
    cast(dayofweek({{ expr }}) - 1 as bigint)
{%- endmacro %}

{#- Lists: a one-element list, an element put in front, the elements joined into a string. -#}
{% macro list_of(expr) -%}
    {{ return(adapter.dispatch('list_of')(expr)) }}
{%- endmacro %}
{% macro default__list_of(expr) -%}
    [{{ expr }}]
{%- endmacro %}
{% macro spark__list_of(expr) -%}
    array({{ expr }})
{%- endmacro %}

{% macro list_prepend_element(element, list) -%}
    {{ return(adapter.dispatch('list_prepend_element')(element, list)) }}
{%- endmacro %}
{% macro default__list_prepend_element(element, list) -%}
    list_prepend({{ element }}, {{ list }})
{%- endmacro %}
{% macro spark__list_prepend_element(element, list) -%}
    array_prepend({{ list }}, {{ element }})
{%- endmacro %}

{% macro list_join(list, separator) -%}
    {{ return(adapter.dispatch('list_join')(list, separator)) }}
{%- endmacro %}
{% macro default__list_join(list, separator) -%}
    array_to_string({{ list }}, '{{ separator }}')
{%- endmacro %}
{% macro spark__list_join(list, separator) -%}
    array_join({{ list }}, '{{ separator }}')
{%- endmacro %}

{#- An ordered string aggregate (DuckDB rejects within group for string_agg; Spark knows only that form). -#}
{% macro string_agg_ordered(expr, separator, order_by) -%}
    {{ return(adapter.dispatch('string_agg_ordered')(expr, separator, order_by)) }}
{%- endmacro %}
{% macro default__string_agg_ordered(expr, separator, order_by) -%}
    string_agg({{ expr }}, '{{ separator }}' order by {{ order_by }})
{%- endmacro %}
{% macro spark__string_agg_ordered(expr, separator, order_by) -%}
    string_agg({{ expr }}, '{{ separator }}') within group (order by {{ order_by }})
{%- endmacro %}

{#- Whether a string starts with a prefix. -#}
{% macro starts_with(expr, prefix) -%}
    {{ return(adapter.dispatch('starts_with')(expr, prefix)) }}
{%- endmacro %}
{% macro default__starts_with(expr, prefix) -%}
    starts_with({{ expr }}, {{ prefix }})
{%- endmacro %}
{% macro spark__starts_with(expr, prefix) -%}
    startswith({{ expr }}, {{ prefix }})
{%- endmacro %}

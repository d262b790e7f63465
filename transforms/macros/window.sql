{#- The business dates a partitioned run was asked for (the whole history when run without a window).
    They come from the environment, not --vars: changing a var makes dbt re-parse the whole project. And they
    are read only when dbt executes, not while it parses (`execute` is false then): dbt records each variable
    a model reads at parse time and parses the model again whenever its value changes, which the window does
    every day (docs/decisions/0099). Nothing parsing keeps (refs, sources, configs) depends on it; dbt also renders
    a model's hooks while it parses, to find their refs, so a hook's argument reading the window would read it
    then too, were it not for `execute`. -#}
{% macro window_start() -%}cast('{{ window_bound("DATAOPS_WINDOW_START", "1900-01-01") }}' as date){%- endmacro %}
{% macro window_end() -%}cast('{{ window_bound("DATAOPS_WINDOW_END", "2999-12-31") }}' as date){%- endmacro %}

{% macro window_bound(variable, default) -%}
    {{- env_var(variable, default) if execute else default -}}
{%- endmacro %}

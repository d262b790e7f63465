{#- The business dates a partitioned run was asked for (the whole history when run without a window).
    They come from the environment, not --vars: changing a var makes dbt re-parse the whole project. -#}
{% macro window_start() -%}cast('{{ env_var("DATAOPS_WINDOW_START", "1900-01-01") }}' as date){%- endmacro %}
{% macro window_end() -%}cast('{{ env_var("DATAOPS_WINDOW_END", "2999-12-31") }}' as date){%- endmacro %}

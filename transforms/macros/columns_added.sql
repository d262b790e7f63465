{#- A pre-hook of an incremental model that has gained a column (docs/decisions/0087): its table, built before
    the column existed, cannot be brought up to date by an incremental run. dbt's `on_schema_change='fail'`
    would stop the run too, naming dbt's own remedy; this names the platform's, before anything is written.
    The models never add the column in place: an added column lands last, not where the model's YAML puts it
    (the first date column splits the published table into months), and holds nulls until every row is
    recomputed. -#}
{% macro fail_if_built_without_a_column() -%}
    {%- if execute and is_incremental() -%}
        {%- set held = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
        {%- set missing = model.columns.keys() | map('lower') | reject('in', held) | list -%}
        {%- if missing -%}
            {{ exceptions.raise_compiler_error(
                this.schema ~ '.' ~ this.identifier ~ ' was built before its column ' ~ missing | join(', ') ~ ' existed (docs/decisions/0087):'
                ~ ' rebuild it once with `dataops backfill --start D --end D --full-refresh`, or only it and what'
                ~ ' reads it with `dataops dbt build --full-refresh --select ' ~ this.identifier ~ '+`'
            ) }}
        {%- endif -%}
    {%- endif -%}
    select 1
{%- endmacro %}

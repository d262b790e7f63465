{#- The sources of a staging model on Spark: each raw table it reads, exported by the platform as Parquet under
    DATAOPS_SPARK_DIR/raw/<identifier> just before dbt starts (dataops/transform/spark.py), registered again
    as an external table so that the run reads that export and no older one. A pre-hook of every staging
    model (dbt_project.yml); on DuckDB it renders nothing, so no statement runs. The product's events are not
    in the raw layer (source meta storage: lake): macros/product_lake.sql reads them from the lake. -#}
{% macro register_sources_of(node) -%}
    {{ return(adapter.dispatch('register_sources_of')(node)) }}
{%- endmacro %}

{% macro default__register_sources_of(node) -%}{%- endmacro %}

{% macro spark__register_sources_of(node) -%}
    {%- if execute -%}
        {%- set root = env_var('DATAOPS_SPARK_DIR') ~ '/raw' -%}
        {%- for source_name, table_name in node.sources -%}
            {%- for source in graph.sources.values() -%}
                {%- set storage = source.source_meta.get('storage') or source.config.get('meta', {}).get('storage') -%}
                {%- if source.source_name == source_name and source.name == table_name and storage != 'lake' -%}
                    {%- set relation = source.schema ~ '.' ~ source.identifier -%}
                    {%- set location = root ~ '/' ~ source.identifier -%}
                    {%- do run_query('create database if not exists ' ~ source.schema) -%}
                    {%- do run_query('drop table if exists ' ~ relation) -%}
                    {%- do run_query('create table ' ~ relation ~ " using parquet location '" ~ location ~ "'") -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- The product's events are not in the build warehouse: ingestion in motion lands them straight into the
    lake (dataops/ingest/events.py), each event date a folder of versions, and the device map a folder of
    versions, the newest holding everything (docs/events.md). A staging model reads the newest version of
    each folder through this macro; before any event was ever landed (a platform whose product sends nothing
    yet) it is an empty relation of the same columns and types, so that the model and everything downstream
    still build. `columns` maps each column to its type; `folders` is the folder pattern under
    DATAOPS_LAKE_DIR/raw/product. The lake is looked at when the model runs, not when dbt parses. -#}
{% macro product_lake(table, folders, columns) -%}
    {{ return(adapter.dispatch('product_lake')(table, folders, columns)) }}
{%- endmacro %}

{#- Called only when dbt executes: a path read while dbt parses would be recorded, and each data directory's
    own path would make dbt parse the product's models again (docs/decisions/0099). -#}
{% macro product_lake_root() -%}
    {{- return(env_var('DATAOPS_LAKE_DIR', env_var('DATAOPS_DATA_DIR', '../data') ~ '/lake')) -}}
{%- endmacro %}

{% macro default__product_lake(table, folders, columns) -%}
    {%- set found = 0 -%}
    {%- if execute -%}
        {%- set pattern = product_lake_root() ~ '/raw/product/' ~ table ~ '/' ~ folders ~ 'part-*.parquet' -%}
        {%- set found = run_query("select count(*) from glob('" ~ pattern ~ "')").columns[0].values()[0] -%}
    {%- endif -%}
    {%- set typed = [] -%}
    {%- for name in columns -%}
        {%- do typed.append('cast(' ~ (name if found > 0 else 'null') ~ ' as ' ~ columns[name] ~ ') as ' ~ name) -%}
    {%- endfor -%}
    {%- if found > 0 -%}
        (select {{ typed | join(', ') }}
        from read_parquet('{{ pattern }}', filename = true, hive_partitioning = false)
        qualify filename = max(filename) over (partition by parse_dirpath(filename)))
    {%- else -%}
        (select {{ typed | join(', ') }} where false)
    {%- endif -%}
{%- endmacro %}

{#- On Spark the same folders are an external table over the lake (registered again each time the model runs,
    so that it lists the folders as they are now), its columns and types given, so that an empty or absent
    folder reads as no rows. Spark lists every part-*.parquet below the folder (the date=D folders of the
    events; hidden files, a version being written, are skipped) and keeps the newest file of each folder, as
    DuckDB does: the file names sort by the time they were written (dataops/ingest/events.py). -#}
{% macro spark__product_lake(table, folders, columns) -%}
    {%- set relation = 'raw.product_lake__' ~ table -%}
    {%- set declared = [] -%}
    {%- set typed = [] -%}
    {%- for name in columns -%}
        {%- do declared.append(name ~ ' ' ~ columns[name]) -%}
        {%- do typed.append('cast(' ~ name ~ ' as ' ~ columns[name] ~ ') as ' ~ name) -%}
    {%- endfor -%}
    {%- if execute -%}
        {%- do run_query('create database if not exists raw') -%}
        {%- do run_query('drop table if exists ' ~ relation) -%}
        {%- do run_query(
            'create table ' ~ relation ~ ' (' ~ declared | join(', ') ~ ') using parquet'
            ~ " location '" ~ product_lake_root() ~ '/raw/product/' ~ table ~ "'"
            ~ " options (recursiveFileLookup 'true', pathGlobFilter 'part-*.parquet')"
        ) -%}
    {%- endif -%}
    (select {{ typed | join(', ') }}
    from {{ relation }}
    qualify _metadata.file_path
        = max(_metadata.file_path) over (partition by regexp_extract(_metadata.file_path, '^(.*)/', 1)))
{%- endmacro %}

{#- round(scale * num / den, 2), half away from zero, exactly (integers, non-negative), as decimal(38,2);
    0 when den is 0 (registry: usage_kpis). DuckDB's integer division is `//`, Spark's `div`. -#}
{% macro ratio_rounded(num, den, scale) -%}
    {{ return(adapter.dispatch('ratio_rounded')(num, den, scale)) }}
{%- endmacro %}

{% macro default__ratio_rounded(num, den, scale) -%}
    {{ _ratio_rounded(num, den, scale, '//') }}
{%- endmacro %}

{% macro spark__ratio_rounded(num, den, scale) -%}
    {{ _ratio_rounded(num, den, scale, 'div') }}
{%- endmacro %}

{% macro _ratio_rounded(num, den, scale, integer_division) -%}
    {%- set cents = '(200 * ' ~ scale ~ ' * ' ~ num ~ ' + ' ~ den ~ ') ' ~ integer_division ~ ' (2 * ' ~ den ~ ')' -%}
    (case when {{ den }} > 0 then cast(cast({{ cents }} as decimal(38, 0)) * 0.01 as decimal(38, 2))
    else cast(0 as decimal(38, 2)) end)
{%- endmacro %}

{#- Staging models that keep the latest version of each source record, incremental on DuckDB by the records
    a run's window loaded (docs/decisions/0065): each such record is recomputed from all its versions, every
    other row is left as it is. A staged row depends only on its own record's versions in the raw layer, and
    a load changes the raw layer only by replacing the window's partitions and releasing orphans from
    quarantine; so the records to recompute are those with a version in the window's partitions, those whose
    staged version came from one of them (a re-run that drops it falls back to an older version, or to none),
    and those a load released from quarantine into their own, older partition (pipeline.released_rows,
    dataops/ingest/ledger.py, until a complete build covers them). A full refresh, and Spark (views), build
    everything: the filters render nothing there. -#}

{#- The keys of the records to recompute: `raw_key` is the record's key as an expression over the columns of
    source `system`.`table`, `staged_key` the staged column. The released versions are a separate arm of the
    union, not an `or` of the window's filter: an `or` with a subquery made DuckDB read the partition and hash
    of every raw row (0.5 s for the lead changes at SF 10; docs/decisions/0076). -#}
{% macro records_loaded_in_window(system, table, raw_key, staged_key) -%}
    (
        select {{ raw_key }} from {{ source(system, table) }}
        where _partition between {{ window_start() }} and {{ window_end() }}{{ union_released(system, table, raw_key) }}
        union
        select {{ staged_key }} from {{ this }}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
    )
{%- endmacro %}

{#- And the records with a version a load released from quarantine and no complete build has covered yet. -#}
{% macro union_released(system, table, raw_key) -%}
    {%- if ledger_relation('released_rows') is not none %}
        union
        select {{ raw_key }} from {{ source(system, table) }}
        where (_partition, _record_hash) in {{ unbuilt_released(system, table, 'released.partition, released.record_hash') }}
    {%- endif -%}
{%- endmacro %}

{#- `key` between the least and the greatest of `keys` (a subquery of one column): always true of a member of
    `keys`, so it changes no result; it lets DuckDB skip the row groups of a large table whose key range holds
    none of them (its zone maps), where a semi join alone reads every key. The source systems number their
    records in the order they create them, and the raw and staged tables are written in partition order, so
    a day's records sit in a few row groups (docs/decisions/0076). -#}
{% macro key_within_range_of(key, keys) -%}
    {{ key }} between (select min(k) from {{ keys }} as keys_in_range (k))
    and (select max(k) from {{ keys }} as keys_in_range (k))
{%- endmacro %}

{#- Restricts the rows read from the source to the versions of the records to recompute, in incremental runs
    only. -#}
{% macro only_records_loaded_in_window(system, table, raw_key, staged_key) -%}
    {%- if is_incremental() %}
        {%- set records = records_loaded_in_window(system, table, raw_key, staged_key) %}
        where
            {{ raw_key }} in {{ records }}
            and {{ key_within_range_of(raw_key, records) }}
    {%- endif -%}
{%- endmacro %}

{#- The partitions into which a load released orphans of `system`.`table` from quarantine that no complete
    build has covered yet (a released row keeps its own partition, outside the window of the load that
    released it). -#}
{% macro released_partitions(system, table) -%}
    {%- if ledger_relation('released_rows') is none -%}
        (select cast(null as date) where false)
    {%- else -%}
        {{ unbuilt_released(system, table, 'released.partition') }}
    {%- endif -%}
{%- endmacro %}

{#- Facts of one row per staged record (fct_payments, fct_credit_memos), incremental by `staged_key` with
    delete+insert: a run recomputes the records staged from the window's partitions or from a partition a load
    released orphans into (each of its records: the few of such a partition, a superset of the released), and
    those the fact held from the window's partitions (a re-run that dropped their newer version falls back to
    an older one). -#}
{% macro only_staged_records_of_window(system, table, staged_key) -%}
    {%- if is_incremental() %}
        where
            loaded_partition between {{ window_start() }} and {{ window_end() }}
            or loaded_partition in {{ released_partitions(system, table) }}
            or {{ staged_key }} in (
                select {{ staged_key }} from {{ this }}
                where loaded_partition between {{ window_start() }} and {{ window_end() }}
            )
    {%- endif -%}
{%- endmacro %}

{#- Their post-hook: a fact held from the window's partitions whose record is no longer staged (a re-run
    dropped its only version) is deleted. -#}
{% macro delete_facts_no_longer_staged(staged_model, staged_key) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where
            loaded_partition between {{ window_start() }} and {{ window_end() }}
            and {{ staged_key }} not in (select {{ staged_key }} from {{ ref(staged_model) }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The rows of the ledger of released orphans (`columns` of alias `released`) of `system`.`table` that no
    complete build has covered yet. -#}
{% macro unbuilt_released(system, table, columns) -%}
    (
        select {{ columns }} from {{ ledger_relation('released_rows') }} as released
        where
            released.system = '{{ system }}'
            and released.table_name = '{{ table }}'
            and released.built_at is null
    )
{%- endmacro %}

{#- A table of the ledger (dataops/ingest/ledger.py), or none when no load has created it yet. -#}
{% macro ledger_relation(identifier, database=none) -%}
    {%- if execute -%}
        {{ return(adapter.get_relation(database=database or this.database, schema='pipeline', identifier=identifier)) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#- A table of the pipeline schema that hooks write to (notes, records), created by the first hook that needs
    it; `ledger_relation()` finds it for the readers. -#}
{% macro pipeline_table(identifier, columns) -%}
    {%- if execute -%}
        {%- do run_query(
            'create schema if not exists ' ~ this.database ~ '.pipeline; '
            ~ 'create table if not exists ' ~ this.database ~ '.pipeline.' ~ identifier ~ ' (' ~ columns ~ ')'
        ) -%}
    {%- endif -%}
    {{ return(this.database ~ '.pipeline.' ~ identifier) }}
{%- endmacro %}

{#- The post-hook: after the delete+insert, a record staged from the window none of whose versions is left
    in the raw layer (a re-extracted day no longer holds it) is no longer staged. Only the raw keys within the
    range of those staged from the window can match one of them. -#}
{% macro delete_records_no_longer_loaded(system, table, raw_key, staged_key) -%}
    {%- if is_incremental() -%}
        {%- set staged_from_window -%}
            (
                select {{ staged_key }} from {{ this }}
                where loaded_partition between {{ window_start() }} and {{ window_end() }}
            )
        {%- endset -%}
        delete from {{ this }}
        where
            loaded_partition between {{ window_start() }} and {{ window_end() }}
            and {{ staged_key }} not in (
                select {{ raw_key }} from {{ source(system, table) }}
                where {{ key_within_range_of(raw_key, staged_from_window) }}
            )
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- A journal line's key over the raw columns: its journal and its line number. -#}
{% macro journal_line_key(journal_no='journal_no', line_no='line_no') -%}
    {{ journal_no }} || '-' || lpad(cast({{ line_no }} as string), 3, '0')
{%- endmacro %}

{#- The data tests of the largest incremental models read the rows written since their tests last passed,
    where that proves the whole table (docs/decisions/0077). A test over the rows a build wrote proves the
    table only if every row kept was checked by a build whose tests passed (a failed build leaves its rows),
    `unique` must still catch a new row colliding with an old one, and `relationships` can be broken by a
    parent removed, which no written child shows. So a model that opts in keeps, in the transaction that
    writes its rows, a record of the keys it recomputes (rewritten, inserted or deleted): a pre-hook, before the
    write, so that a key the build deletes is noted too; every key in a full build (a row without a key). The
    record is `pipeline.untested__<model>`, one column named after the key. At the end of a dbt command a
    model's record is cleared when every data test reading the model ran in that command and passed
    (`clear_rows_tested`, on-run-end). In between:
    - a `unique` rule of `column_rules` (macros/column_rules.sql, decision 0098) on the record's key: the keys of
      the record that occur more than once in the whole table (a semi join that reads the key column, bounded
      by the record's key range), which holds every duplicate that involves a row written since the last pass:
      a duplicate of two older rows was there when it passed;
    - `relationships`: the children written since the last pass without a parent, and the children of the
      parents recomputed since the last pass that are no longer there (a parent removed); every other child
      and its parent were there when it passed, and are;
    - a `unique_together` rule whose columns include the record's key: the same as `unique`; and on a record of
      customer-days (a model keyed by customer and day, below, decision 0083), the rows of those customer-days.
    The whole table when a record is missing (the first build after this change, a model that keeps none), holds
    every key, or is keyed by another column, and on Spark (dbt's own forms: dispatched). -#}

{#- The record of `model_name`, or none when the model keeps none (or outside execution). -#}
{% macro rows_untested_record(database, model_name) -%}
    {{ return(ledger_relation('untested__' ~ model_name, database)) }}
{%- endmacro %}

{#- The key column of the record of the model `relation` tests, when the record says which rows are untested:
    none when it is missing or holds every key (a row without a key). -#}
{% macro rows_untested_key(relation) -%}
    {%- if relation.identifier is not defined -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set record = rows_untested_record(relation.database, relation.identifier) -%}
    {%- if record is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(record) -%}
    {%- if columns | length > 1 -%}
        {#- a record of customer-days (below): only `unique_together` reads it -#}
        {{ return(none) }}
    {%- endif -%}
    {%- set key = columns[0].name -%}
    {%- set every_key = run_query('select count(*) from ' ~ record ~ ' where ' ~ key ~ ' is null') -%}
    {{ return(none if every_key.columns[0].values()[0] > 0 else key) }}
{%- endmacro %}

{#- A model's pre-hook: notes the keys it recomputes (`keys`, a subquery of one column) in an incremental
    build; every key (a row without a key) in a full build, when `every_key` (the build recomputes them all),
    or when the model kept no record before (its earlier rows were never noted). -#}
{% macro note_rows_untested(key, keys, every_key=false) -%}
    {{ return(adapter.dispatch('note_rows_untested')(key, keys, every_key)) }}
{%- endmacro %}

{% macro default__note_rows_untested(key, keys, every_key) -%}
    {%- set record = this.database ~ '.pipeline.untested__' ~ this.name -%}
    {%- set kept = rows_untested_record(this.database, this.name) is not none -%}
    create schema if not exists {{ this.database }}.pipeline;
    create table if not exists {{ record }} ({{ key }} varchar);
    {%- if is_incremental() and kept and not every_key %}
        insert into {{ record }}
        select distinct cast(k as varchar) from {{ keys }} as recomputed (k)
    {%- else %}
        insert into {{ record }} values (null)
    {%- endif %}
{%- endmacro %}

{% macro spark__note_rows_untested(key, keys, every_key) -%}
    select 1
{%- endmacro %}

{#- A record of customer-days (decision 0083), for a model keyed by customer and day whose build recomputes, for
    some customers, every day from one (fct_customer_health_daily: macros/incremental_health.sql): one row per
    customer and the first day noted, `pipeline.untested__<model>` (customer_id, from_date); a row without a
    customer names every customer from its date, every row from 1900-01-01. The model's pre-hook notes, before it
    writes, the customers and days noted for it in `notes` (every row when `notes` is none, in a full build, or
    when the model kept no record before). Cleared as the other records (`clear_rows_tested`). -#}
{% macro note_customer_days_untested(notes, model=none) -%}
    {{ return(adapter.dispatch('note_customer_days_untested')(notes, model)) }}
{%- endmacro %}

{% macro default__note_customer_days_untested(notes, model) -%}
    {%- set record = this.database ~ '.pipeline.untested__' ~ this.name -%}
    {%- set kept = rows_untested_record(this.database, this.name) is not none -%}
    create schema if not exists {{ this.database }}.pipeline;
    create table if not exists {{ record }} (customer_id varchar, from_date date);
    {%- if is_incremental() and kept and notes is not none %}
        insert into {{ record }}
        select customer_id, min(from_date) from {{ notes }} where model = '{{ model }}' group by 1
    {%- else %}
        insert into {{ record }} values (null, cast('1900-01-01' as date))
    {%- endif %}
{%- endmacro %}

{% macro spark__note_customer_days_untested(notes, model) -%}
    select 1
{%- endmacro %}

{#- Whether the model `relation` tests keeps a record of customer-days (none outside execution). -#}
{% macro rows_untested_are_customer_days(relation) -%}
    {%- if relation.identifier is not defined -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set record = rows_untested_record(relation.database, relation.identifier) -%}
    {{ return(record is not none and adapter.get_columns_in_relation(record) | length > 1) }}
{%- endmacro %}

{#- The rows of `model` on the customer-days of its record: every customer from the record's first date without
    a customer, and each customer of the record from its first date before that. Two selects, as the model's
    own (macros/incremental_health.sql): the date's bound lets DuckDB skip the older blocks. -#}
{% macro rows_on_customer_days_untested(model, columns) -%}
    {%- set record = rows_untested_record(model.database, model.identifier) -%}
    {%- set everyone -%}
        (select coalesce(min(from_date), cast('9999-12-31' as date)) from {{ record }} where customer_id is null)
    {%- endset %}
    select {{ columns | join(', ') }} from {{ model }}
    where date_day >= {{ everyone }}
    union all
    select {% for column in columns %}written.{{ column }}{{ ", " if not loop.last }}{% endfor %}
    from {{ model }} as written
    inner join (
        select customer_id, min(from_date) as from_date
        from {{ record }}
        where customer_id is not null
        group by 1
    ) as noted
        on written.customer_id = noted.customer_id and written.date_day >= noted.from_date
    where written.date_day < {{ everyone }}
{%- endmacro %}

{#- `column` in the keys of `record` and within their range (the zone maps of a table written in key order
    skip the rest: macros/incremental_staging.sql). -#}
{% macro in_rows_untested(column, record, key) -%}
    {%- set keys = '(select ' ~ key ~ ' from ' ~ record ~ ')' -%}
    {{ column }} in {{ keys }}
    and {{ key_within_range_of(column, keys) }}
{%- endmacro %}

{#- The rows a uniqueness rule of `column_rules` groups (macros/column_rules.sql), on DuckDB: of a model that keeps
    a record, the rows of the record's keys when the rule's columns include the key (for `unique` on the key: the
    keys of the record that occur more than once in the whole table), and the rows of its customer-days when the
    record is of customer-days and the rule is on the customer and the day; otherwise every row (dbt's form). -#}
{% macro duckdb__column_rules_keyed_rows(model, columns) -%}
    {%- set key = rows_untested_key(model) -%}
    {%- if rows_untested_are_customer_days(model) and 'customer_id' in columns and 'date_day' in columns -%}
        {{ rows_on_customer_days_untested(model, columns) }}
    {%- elif key is not none and key in columns -%}
        {%- set record = rows_untested_record(model.database, model.identifier) -%}
        select {{ columns | join(', ') }} from {{ model }}
        where {{ in_rows_untested(key, record, key) }}
    {%- else -%}
        {{ default__column_rules_keyed_rows(model, columns) }}
    {%- endif -%}
{%- endmacro %}

{#- `relationships`, overriding dbt's on DuckDB: narrowed when both the child and the parent keep a record,
    the parent's keyed by `field`. -#}
{% macro duckdb__test_relationships(model, column_name, to, field) -%}
    {%- set child_key = rows_untested_key(model) -%}
    {%- set parent_key = rows_untested_key(to) -%}
    {%- if child_key is none or parent_key is none or parent_key != field -%}
        {{ dbt.default__test_relationships(model, column_name, to, field) }}
    {%- else -%}
        {%- set child_record = rows_untested_record(model.database, model.identifier) -%}
        {%- set parent_record = rows_untested_record(to.database, to.identifier) %}
with

written as (

    select {{ column_name }} as from_field from {{ model }}
    where {{ in_rows_untested(child_key, child_record, child_key) }}

),

parents_removed as (

    select {{ parent_key }} as removed from {{ parent_record }}
    except
    select {{ field }} from {{ to }}
    where {{ field }} in (select {{ parent_key }} from {{ parent_record }})

),

of_parents_removed as (

    select {{ column_name }} as from_field from {{ model }}
    where {{ column_name }} in (select removed from parents_removed)

),

child as (

    select from_field from written
    union
    select from_field from of_parents_removed

),

parent as (

    select {{ field }} as to_field from {{ to }}
    where {{ field }} in (select from_field from child)

),

final as (

    select child.from_field
    from child
    left join parent on child.from_field = parent.to_field
    where child.from_field is not null and parent.to_field is null

)

select * from final
    {%- endif -%}
{%- endmacro %}

{#- The end of every dbt command (dbt_project.yml's on-run-end): each record whose model's data tests all ran in
    this command and passed is cleared; its rows are proven. A test that failed, erred, was skipped or not
    selected leaves the record, so the next command tests those rows again. -#}
{% macro clear_rows_tested(results) -%}
    {{ return(adapter.dispatch('clear_rows_tested')(results)) }}
{%- endmacro %}

{% macro default__clear_rows_tested(results) -%}
    {%- if not execute -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set kept = run_query(
        "select table_name from information_schema.tables where table_schema = 'pipeline' "
        ~ "and table_name like 'untested\\_\\_%' escape '\\' and table_catalog = '" ~ target.database ~ "'"
    ).columns[0].values() -%}
    {%- set passed = [] -%}
    {%- for result in results if result.status == 'pass' -%}
        {%- do passed.append(result.node.unique_id) -%}
    {%- endfor -%}
    {%- set statements = ['select 1'] -%}
    {%- for model in graph.nodes.values() if model.resource_type == 'model' and ('untested__' ~ model.name) in kept -%}
        {%- set tests = [] -%}
        {%- for test in graph.nodes.values() if test.resource_type == 'test' -%}
            {%- if model.unique_id in test.depends_on.nodes -%}
                {%- do tests.append(test.unique_id) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if tests and tests | reject('in', passed) | list | length == 0 -%}
            {%- do statements.append('delete from ' ~ target.database ~ '.pipeline.untested__' ~ model.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
{%- endmacro %}

{% macro spark__clear_rows_tested(results) -%}
    select 1
{%- endmacro %}

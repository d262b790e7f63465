{#- A model's (or seed's) column rules in one data test (docs/decisions/0095, 0098): the columns that must not be
    null, the columns whose values must be among those accepted, the columns unique on their own and the sets of
    columns unique together (a key of several columns), checked in one query where dbt's `not_null`,
    `accepted_values`, `unique` and the project's `unique_columns` made a test node each. Every node costs a
    fixed share of dbt's and Dagster's work on every build, whatever rows it reads. The failing rows come back
    labelled: the column (the columns joined by ', ' for `unique_together`), the rule it breaks and its value
    (null for `not_null`; the duplicated value for `unique`, the duplicated values joined by ', ' for
    `unique_together`, a null among them written 'null'): one row for each rule a row breaks, and one row for
    each duplicated value (not for each duplicate row). As dbt's own tests, a null value is not judged by
    `accepted_values` nor by `unique`; `unique_together` groups nulls together, as one value (as `unique_columns`
    did). Both engines: one read of the model for the rows that break a row's rule, then one branch per rule over
    those rows (Spark may read the model again per branch: it inlines the CTE); each uniqueness rule groups the
    rows of its own read (`column_rules_keyed_rows`: on DuckDB only the rows untested of a model that keeps a
    record, decision 0077). Column names are used as written, as dbt's own tests do without `quote`; a string
    value is compared as a quoted literal (escaped the engine's way), a number or a boolean as itself. -#}
{% test column_rules(model, not_null=[], accepted_values={}, unique=[], unique_together=[]) %}
    {%- if not column_rules_well_formed(not_null, accepted_values, unique, unique_together) -%}
        {{ exceptions.raise_compiler_error(
            "column_rules: not_null and unique are lists of columns, accepted_values maps a column to its values,"
            ~ " unique_together is a list of lists of two or more columns, and at least one of them has a rule") }}
    {%- endif -%}
    {{ column_rules_failing(model, not_null, accepted_values, column_rules_keys(unique, unique_together)) }}
{% endtest %}

{#- Whether the rules have their shapes, and there is at least one. -#}
{% macro column_rules_well_formed(not_null, accepted_values, unique, unique_together) -%}
    {%- set lists = [not_null, unique, unique_together] -%}
    {%- for rules in lists if rules is string or rules is mapping or rules is not iterable -%}
        {{ return(false) }}
    {%- endfor -%}
    {%- for columns in unique_together
        if columns is string or columns is mapping or columns is not iterable or columns | length < 2 -%}
        {{ return(false) }}
    {%- endfor -%}
    {{ return(accepted_values is mapping and (not_null or accepted_values or unique or unique_together)) }}
{%- endmacro %}

{#- The uniqueness rules as (label, rule, columns). -#}
{% macro column_rules_keys(unique, unique_together) -%}
    {%- set keys = [] -%}
    {%- for column in unique -%}
        {%- do keys.append((column, 'unique', [column])) -%}
    {%- endfor -%}
    {%- for columns in unique_together -%}
        {%- do keys.append((columns | join(', '), 'unique_together', columns | list)) -%}
    {%- endfor -%}
    {{ return(keys) }}
{%- endmacro %}

{#- The rules of a row as (column, rule, the condition a row breaking it meets). -#}
{% macro column_rules_broken(not_null, accepted_values) -%}
    {%- set broken = [] -%}
    {%- for column in not_null -%}
        {%- do broken.append((column, 'not_null', column ~ ' is null')) -%}
    {%- endfor -%}
    {%- for column, values in accepted_values.items() -%}
        {%- set accepted = [] -%}
        {%- for value in values -%}
            {%- if value is boolean -%}
                {%- do accepted.append('true' if value else 'false') -%}
            {%- elif value is number -%}
                {%- do accepted.append(value | string) -%}
            {%- else -%}
                {%- do accepted.append("'" ~ dbt.escape_single_quotes(value | string) ~ "'") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do broken.append((column, 'accepted_values', column ~ ' not in (' ~ accepted | join(', ') ~ ')')) -%}
    {%- endfor -%}
    {{ return(broken) }}
{%- endmacro %}

{#- The value of a duplicated key as a string: the values of its columns joined, a null written 'null'. -#}
{% macro column_rules_key_value(rule, columns) -%}
    {%- if rule == 'unique' -%}
        cast({{ columns[0] }} as string)
    {%- else -%}
        {%- set values = [] -%}
        {%- for column in columns -%}
            {%- do values.append("coalesce(cast(" ~ column ~ " as string), 'null')") -%}
        {%- endfor -%}
        {{ values | join(" || ', ' || ") }}
    {%- endif -%}
{%- endmacro %}

{#- The rows a uniqueness rule on `columns` groups: its columns, of every row (on DuckDB, of the rows untested
    when the model keeps a record: macros/rows_untested.sql). -#}
{% macro column_rules_keyed_rows(model, columns) -%}
    {{ return(adapter.dispatch('column_rules_keyed_rows')(model, columns)) }}
{%- endmacro %}

{% macro default__column_rules_keyed_rows(model, columns) -%}
    select {{ columns | join(', ') }} from {{ model }}
{%- endmacro %}

{% macro column_rules_failing(model, not_null, accepted_values, keys) -%}
    {%- set columns = not_null + (accepted_values.keys() | reject('in', not_null) | list) -%}
    {%- set broken = column_rules_broken(not_null, accepted_values) -%}
    {%- set conditions = [] -%}
    {%- set reads = [] -%}
    {%- set branches = [] -%}
    {%- for column, rule, condition in broken -%}
        {%- do conditions.append(condition) -%}
        {%- set value = 'null' if rule == 'not_null' else column -%}
        {%- do branches.append((column, rule, 'cast(' ~ value ~ ' as string)', 'failing', condition, '')) -%}
    {%- endfor -%}
    {%- if broken -%}
        {%- set failing -%}
            select {{ columns | join(', ') }}
            from {{ model }}
            where {{ conditions | join(' or ') }}
        {%- endset -%}
        {%- do reads.append(('failing', failing)) -%}
    {%- endif -%}
    {%- for label, rule, key_columns in keys -%}
        {%- set read = 'keyed_' ~ loop.index -%}
        {%- do reads.append((read, column_rules_keyed_rows(model, key_columns))) -%}
        {%- set condition = key_columns[0] ~ ' is not null' if rule == 'unique' else 'true' -%}
        {%- set grouped = 'group by ' ~ key_columns | join(', ') ~ ' having count(*) > 1' -%}
        {%- set value = column_rules_key_value(rule, key_columns) -%}
        {%- do branches.append((label, rule, value, read, condition, grouped)) -%}
    {%- endfor %}
with
{% for read, query in reads %}
{{ read }} as (

    {{ query | trim | indent(4) }}

),
{% endfor %}
final as (

    {% for column, rule, value, read, condition, grouped in branches -%}
        {{ 'union all' if not loop.first }}
        select
            '{{ column }}' as column_name,
            '{{ rule }}' as rule,
            {{ value }} as failing_value
        from {{ read }}
        where {{ condition }}
        {{ grouped }}
    {% endfor %}
)

select * from final
{%- endmacro %}

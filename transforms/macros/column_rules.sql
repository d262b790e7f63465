{#- A model's (or seed's) column rules in one data test (docs/decisions/0095): the columns that must not be null
    and the columns whose values must be among those accepted, checked in one query where dbt's `not_null` and
    `accepted_values` made a test node each. Every node costs a fixed share of dbt's and Dagster's work on every
    build, whatever rows it reads. The failing rows come back labelled: the column, the rule it breaks and its
    value (null for `not_null`), one row for each rule a row breaks. As dbt's own tests, a null value is not
    judged by `accepted_values`. Both engines: one read of the model for the rows that break any rule, then one
    branch per rule over those rows (Spark may read the model again per branch: it inlines the CTE). Column names
    are used as written, as dbt's own tests do without `quote`; a string value is compared as a quoted literal
    (escaped the engine's way), a number or a boolean as itself. -#}
{% test column_rules(model, not_null=[], accepted_values={}) %}
    {%- if not_null is string or not_null is not iterable or accepted_values is not mapping
        or not (not_null or accepted_values) -%}
        {{ exceptions.raise_compiler_error(
            "column_rules: not_null is a list of columns and accepted_values maps a column to its values,"
            ~ " and at least one of them has a rule") }}
    {%- endif -%}
    {{ column_rules_failing(model, not_null, accepted_values) }}
{% endtest %}

{#- The rules as (column, rule, the condition a row breaking it meets). -#}
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

{% macro column_rules_failing(model, not_null, accepted_values) -%}
    {%- set columns = not_null + (accepted_values.keys() | reject('in', not_null) | list) -%}
    {%- set broken = column_rules_broken(not_null, accepted_values) -%}
    {%- set conditions = [] -%}
    {%- for _, _, condition in broken -%}
        {%- do conditions.append(condition) -%}
    {%- endfor %}
with

failing as (

    select {{ columns | join(', ') }}
    from {{ model }}
    where {{ conditions | join(' or ') }}

),

final as (

    {% for column, rule, condition in broken -%}
        {{ 'union all' if not loop.first }}
        select
            '{{ column }}' as column_name,
            '{{ rule }}' as rule,
            cast({{ 'null' if rule == 'not_null' else column }} as string) as failing_value
        from failing
        where {{ condition }}
    {% endfor %}

)

select * from final
{%- endmacro %}

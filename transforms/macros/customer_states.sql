{#- The registry's customer states (var customer_states: per period of days, each state's name and condition,
    first match wins) as a case expression over the facts of the customer and day (registry/enterprise.yaml,
    customer_states). When the periods' rules differ (a change applied from its date), the period column picks
    the rules in force; otherwise one case serves every day. -#}
{% macro customer_state_case(period_column) -%}
    {%- set periods = var('customer_states') -%}
    {%- set ns = namespace(same=true) -%}
    {%- for period in periods -%}
        {%- if period.states != periods[0].states -%}{%- set ns.same = false -%}{%- endif -%}
    {%- endfor -%}
    {%- if ns.same -%}
        {{ _customer_state_rules(periods[0].states) }}
    {%- else -%}
        case {{ period_column }}
        {%- for period in periods %}
            when {{ period.period }} then {{ _customer_state_rules(period.states) }}
        {%- endfor %}
        end
    {%- endif -%}
{%- endmacro %}

{% macro _customer_state_rules(states) -%}
    case
    {%- for state in states %}
        {%- if state.when == 'otherwise' %}
        else '{{ state.name }}'
        {%- else %}
        when {{ state.when }} then '{{ state.name }}'
        {%- endif %}
    {%- endfor %}
    end
{%- endmacro %}

{#- The registry's customer states (var customer_states: name and condition, first match wins) as a case
    expression over the facts of the customer and day (see registry/enterprise.yaml, customer_states). -#}
{% macro customer_state_case() -%}
    case
    {%- for state in var('customer_states') %}
        {%- if state.when == 'otherwise' %}
        else '{{ state.name }}'
        {%- else %}
        when {{ state.when }} then '{{ state.name }}'
        {%- endif %}
    {%- endfor %}
    end
{%- endmacro %}

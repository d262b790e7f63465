{#- The enterprise's normalisation rules (registry/enterprise.yaml, customer_schema_rule). -#}

{% macro normalize_text(column) -%}
    nullif(trim({{ regexp_replace_all(column, '\\s+', ' ') }}), '')
{%- endmacro %}

{% macro normalize_email(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{% macro normalize_tax_id(column) -%}
    nullif(upper({{ regexp_replace_all(column, '[^A-Za-z0-9]', '') }}), '')
{%- endmacro %}

{#- Lowercase; delete . , and '; other non-alphanumerics become spaces; collapse; then strip trailing legal
    forms (the registry's legal_suffixes), repeatedly. -#}
{% macro normalize_company_name(column) -%}
    {%- set suffixes = var('legal_suffixes') | join('|') -%}
    {%- set without_punctuation = regexp_replace_all('lower(' ~ column ~ ')', "[.,'']", '') -%}
    {%- set spaced = regexp_replace_all(without_punctuation, '[^a-z0-9]+', ' ') -%}
    {%- set collapsed = 'trim(' ~ regexp_replace_all(spaced, '\\s+', ' ') ~ ')' -%}
    nullif(trim({{ regexp_replace_all(collapsed, '(\\s+(' ~ suffixes ~ '))+$', '') }}), '')
{%- endmacro %}

{#- ISO 3166 alpha-2 from however a country was typed, through the country_codes seed. -#}
{% macro country_code(column) -%}
    (select cc.iso2 from {{ ref('country_codes') }} as cc where cc.alias = upper(trim({{ column }})))
{%- endmacro %}

{#- A SQL list literal from a list var: ('a', 'b'). -#}
{% macro sql_list(values) -%}
    {%- for value in values -%}'{{ value }}'{%- if not loop.last -%}, {% endif -%}{%- endfor -%}
{%- endmacro %}

{#- Models keyed by an entity (a lead, a customer's transition day) recompute, in an incremental run, only the
    entities whose records the run's window loaded; a full refresh (a new project, a definition adopted:
    dataops/publish/definition_change.py) rebuilds them all. On Spark these models are tables rebuilt whole
    (docs/decisions/0038), so the filters render nothing there. See docs/decisions/0056. -#}

{#- The leads whose record or whose history the window loaded: every row of theirs is recomputed from their
    whole history (a first qualifying day is a minimum over all of it). -#}
{% macro leads_loaded_in_window() -%}
    (
        select lead_id from {{ ref('stg_crm__leads') }}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
        union
        select lead_id from {{ ref('stg_crm__lead_changes') }}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
    )
{%- endmacro %}

{#- Restricts a model's rows to the leads loaded in the window, in incremental runs only. -#}
{% macro only_leads_loaded_in_window(column) -%}
    {%- if is_incremental() %}
        where {{ column }} in {{ leads_loaded_in_window() }}
    {%- endif -%}
{%- endmacro %}

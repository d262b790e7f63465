{#- Models keyed by an entity (a lead, a customer's transition day) recompute, in an incremental run, only the
    entities whose records the run's window loaded; a full refresh (a new project, a definition adopted:
    dataops/publish/definition_change.py) rebuilds them all. On Spark these models are tables rebuilt whole
    (docs/decisions/0038), so the filters render nothing there. See docs/decisions/0056. -#}

{#- The leads whose record or whose history the window loaded: every row of theirs is recomputed from their
    whole history (a first qualifying day is a minimum over all of it). With the leads the staging models held
    from the window before they replaced them (the ledger's restaged_leads, dataops/ingest/ledger.py): a re-run
    that dropped a lead's newer version stages it again from an older partition (decision 0067). -#}
{% macro leads_loaded_in_window() -%}
    (
        select lead_id from {{ ref('stg_crm__leads') }}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
        union
        select lead_id from {{ ref('stg_crm__lead_changes') }}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}{{ or_restaged_leads() }}
    )
{%- endmacro %}

{% macro or_restaged_leads() -%}
    {%- set restaged = ledger_relation('restaged_leads') -%}
    {%- if restaged is not none %}
        union
        select lead_id from {{ restaged }}
    {%- endif -%}
{%- endmacro %}

{#- Restricts a model's rows to the leads loaded in the window, in incremental runs only. -#}
{% macro only_leads_loaded_in_window(column) -%}
    {%- if is_incremental() %}
        where {{ column }} in {{ leads_loaded_in_window() }}
    {%- endif -%}
{%- endmacro %}

{#- The pre-hooks of the lead staging models, in incremental runs: the leads they hold from the window's
    partitions, noted before the build replaces them. -#}
{% macro note_leads_held_from_window() -%}
    {%- set restaged = ledger_relation('restaged_leads') -%}
    {%- if is_incremental() and restaged is not none -%}
        insert into {{ restaged }}
        select distinct
            lead_id,
            now() as noted_at
        from {{ this }}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

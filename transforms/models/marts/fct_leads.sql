{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ note_rows_untested('lead_id', leads_loaded_in_window()) }}",
        "{{ delete_leads_loaded_in_window() }}",
    ]
) }}

-- depends_on: {{ ref('stg_crm__lead_changes') }}

-- Leads judged by the enterprise's MQL definition next to what the CRM's own status says. Incremental runs
-- recompute the leads the window loaded a record or a change of (macros/incremental_entities.sql), their rows
-- deleted first, written in lead order and read through the window's key range
-- (macros/incremental_leads.sql).

with

leads as (

    select * from {{ ref('stg_crm__leads') }}{{ only_leads_in_window_range('lead_id') }}

),

current_period as (

    -- the leads are judged by the definitions in force now (the last period)
    select max(period) as period from {{ ref('registry_definition_periods') }}

),

qualified as (

    select * from {{ ref('int_leads_qualified') }}{{ only_leads_in_window_range('lead_id') }}

),

final as (

    select
        leads.lead_id,
        leads.email,
        leads.email_domain,
        leads.is_business_email,
        leads.company_name,
        leads.lead_source,
        leads.crm_status,
        leads.current_score,
        cast(leads.created_at as date) as created_date,
        qualified.qualified_date,
        qualified.accepted_date,
        qualified.qualified_date is not null as is_qualified,
        leads.crm_status in ('MQL', 'SAL', 'Converted') as is_crm_mql

    from leads
    inner join qualified on leads.lead_id = qualified.lead_id
    inner join current_period on qualified.period = current_period.period

)

select * from final
{{ in_key_order('lead_id') }}

-- Leads judged by the enterprise's MQL definition next to what the CRM's own status says.

with

leads as (

    select * from {{ ref('stg_crm__leads') }}

),

current_period as (

    -- the leads are judged by the definitions in force now (the last period)
    select max(period) as period from {{ ref('registry_definition_periods') }}

),

qualified as (

    select * from {{ ref('int_leads_qualified') }}

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

{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ note_people_of_recomputed_leads() }}",
        "{{ note_rows_untested('lead_id', leads_loaded_in_window()) }}",
        "{{ delete_leads_loaded_in_window() }}",
    ],
    post_hook="{{ note_people_of_recomputed_leads() }}"
) }}

-- Each lead judged by the enterprise's MQL rule (registry: mql), whatever the CRM status says: the first
-- day its score reached the threshold, if its email is a valid business email; and when sales accepted it.
-- One row per lead and period of definitions (seed registry_definition_periods; one period unless a change
-- applies from its date): the threshold is the period's. Incremental runs recompute the leads the window
-- loaded a record or a change of, from their whole history (macros/incremental_entities.sql), and note the
-- emails those leads carried before and after for the people models (macros/incremental_people.sql). The rows
-- are written in lead order and read through the window's key range (macros/incremental_leads.sql).

with

leads as (

    select * from {{ ref('stg_crm__leads') }}{{ only_leads_in_window_range('lead_id') }}

),

periods as (

    select * from {{ ref('registry_definition_periods') }}

),

changes as (

    select * from {{ ref('stg_crm__lead_changes') }}{{ only_leads_in_window_range('lead_id') }}

),

scores as (

    select
        lead_id,
        cast(changed_at as date) as changed_date,
        try_cast(new_value as integer) as score
    from changes
    where changed_field = 'score'

),

first_qualifying as (

    select
        scores.lead_id,
        periods.period,
        min(scores.changed_date) as score_qualified_date
    from scores
    inner join periods on scores.score >= periods.mql_score_threshold
    group by 1, 2

),

first_accepted as (

    select
        lead_id,
        min(cast(changed_at as date)) as accepted_date
    from changes
    where changed_field = 'status' and new_value = '{{ var("sql_accepted_status") }}'
    group by 1

),

final as (

    select
        leads.lead_id,
        periods.period,
        leads.email,
        leads.is_business_email,
        leads.crm_status,
        leads.current_score,
        first_accepted.accepted_date,
        case when leads.is_business_email then first_qualifying.score_qualified_date end as qualified_date

    from leads
    cross join periods
    left join first_qualifying on leads.lead_id = first_qualifying.lead_id and periods.period = first_qualifying.period
    left join first_accepted on leads.lead_id = first_accepted.lead_id

)

select * from final
{{ in_key_order('lead_id, period') }}

with

opportunities as (

    select * from {{ ref('stg_crm__opportunities') }}

),

stage_changes as (

    select * from {{ ref('stg_crm__opportunity_stage_changes') }}

),

hierarchy as (

    select
        account_id,
        ultimate_parent_id
    from {{ ref('int_accounts_hierarchy_resolved') }}

),

closes as (

    select
        opportunity_id,
        min(cast(changed_at as date)) as closed_date,
        bool_or(to_stage = 'Closed Won') as is_won

    from stage_changes
    where to_stage in ('Closed Won', 'Closed Lost')
    group by 1

),

final as (

    select
        opportunities.opportunity_id,
        opportunities.account_id,
        hierarchy.ultimate_parent_id as customer_id,
        opportunities.opportunity_name,
        opportunities.stage_name,
        opportunities.currency_code,
        opportunities.amount,
        cast(opportunities.created_at as date) as created_date,
        opportunities.expected_close_date,
        closes.closed_date,
        closes.closed_date is not null as is_closed,
        coalesce(closes.is_won, false) as is_won

    from opportunities
    left join hierarchy on opportunities.account_id = hierarchy.account_id
    left join closes on opportunities.opportunity_id = closes.opportunity_id

)

select * from final

-- Customers: one row per ultimate parent organisation (the customer schema rule), including bill-to
-- entities that match no CRM account (their own customer, flagged), with their product usage as the event
-- lake knows it.

with

accounts as (

    select * from {{ ref('stg_crm__accounts') }}

),

hierarchy as (

    select * from {{ ref('int_accounts_hierarchy_resolved') }}

),

bill_to as (

    select * from {{ ref('int_bill_to_customers_resolved') }}

),

spells as (

    select * from {{ ref('int_contracts_status_spells') }}

),

contracts as (

    select * from {{ ref('stg_erp__contracts') }}
    where not is_deleted

),

usage_daily as (

    select * from {{ ref('int_usage_customers_daily') }}

),

usage_bounds as (

    select max(date_day) as last_day from usage_daily

),

usage_latest as (

    select
        usage_daily.customer_key as customer_id,
        max(case when usage_daily.usage_events > 0 then usage_daily.date_day end) as last_used_date,
        max(case when usage_daily.date_day = usage_bounds.last_day then usage_daily.monthly_active_users end)
            as monthly_active_users
    from usage_daily
    cross join usage_bounds
    group by 1

),

crm_customers as (

    select
        accounts.account_id as customer_id,
        accounts.account_name as customer_name,
        accounts.country_code,
        'crm' as customer_source

    from accounts
    inner join hierarchy on accounts.account_id = hierarchy.account_id and hierarchy.depth = 0
    where hierarchy.ultimate_parent_id = accounts.account_id

),

erp_only_customers as (

    select
        bill_to_id as customer_id,
        bill_to_name as customer_name,
        country_code,
        'erp_only' as customer_source
    from bill_to
    where not is_matched

),

customers as (

    select * from crm_customers
    union all
    select * from erp_only_customers

),

bill_to_counts as (

    select
        customer_id,
        count(*) as bill_to_count
    from bill_to
    group by 1

),

contract_counts as (

    select
        bill_to.customer_id,
        count(*) as contract_count,
        min(contracts.signed_date) as first_signed_date
    from contracts
    inner join bill_to on contracts.bill_to_id = bill_to.bill_to_id
    group by 1

),

first_live as (

    select
        customer_id,
        min(valid_from_date) as first_live_date
    from spells
    where is_live
    group by 1

),

final as (

    select
        customers.customer_id,
        customers.customer_name,
        customers.country_code,
        customers.customer_source,
        contract_counts.first_signed_date,
        first_live.first_live_date,
        usage_latest.last_used_date,
        coalesce(bill_to_counts.bill_to_count, 0) as bill_to_count,
        coalesce(contract_counts.contract_count, 0) as contract_count,
        coalesce(usage_latest.monthly_active_users, 0) as monthly_active_users

    from customers
    left join bill_to_counts on customers.customer_id = bill_to_counts.customer_id
    left join contract_counts on customers.customer_id = contract_counts.customer_id
    left join first_live on customers.customer_id = first_live.customer_id
    left join usage_latest on customers.customer_id = usage_latest.customer_id

)

select * from final

-- Every CRM account and every ERP bill-to entity, with its parent, its chain up to the customer, and how
-- a bill-to entity was matched.

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

account_rows as (

    select
        accounts.account_id as entity_id,
        'crm_account' as entity_type,
        accounts.account_name as entity_name,
        accounts.parent_account_id as parent_entity_id,
        hierarchy.ultimate_parent_id as customer_id,
        hierarchy.depth,
        hierarchy.parent_chain,
        cast(null as string) as match_method

    from accounts
    inner join hierarchy on accounts.account_id = hierarchy.account_id

),

bill_to_rows as (

    select
        bill_to.bill_to_id as entity_id,
        'erp_bill_to' as entity_type,
        bill_to.bill_to_name as entity_name,
        bill_to.account_id as parent_entity_id,
        bill_to.customer_id,
        coalesce(hierarchy.depth + 1, 0) as depth,
        case
            when hierarchy.parent_chain is null then bill_to.bill_to_id
            else hierarchy.parent_chain || ' > ' || bill_to.bill_to_id
        end as parent_chain,
        bill_to.match_method

    from bill_to
    left join hierarchy on bill_to.account_id = hierarchy.account_id

),

final as (

    select * from account_rows
    union all
    select * from bill_to_rows

)

select * from final

-- ERP bill-to entities matched to CRM accounts and rolled up to their customer (the ultimate parent):
-- by the CRM reference when present, else the normalised tax id, else the normalised name and country.
-- A bill-to entity that matches nothing is its own customer (see int_bill_to_customers_unmatched).

with

bill_to as (

    select * from {{ ref('stg_erp__customers') }}
    where not is_deleted

),

accounts as (

    select * from {{ ref('stg_crm__accounts') }}

),

hierarchy as (

    select * from {{ ref('int_accounts_hierarchy_resolved') }}

),

by_reference as (

    select
        bill_to.bill_to_id,
        accounts.account_id,
        'crm_reference' as match_method
    from bill_to
    inner join accounts on bill_to.crm_account_id = accounts.account_id

),

by_tax_id as (

    select
        bill_to.bill_to_id,
        accounts.account_id,
        'tax_id' as match_method
    from bill_to
    inner join accounts on bill_to.tax_id_normalized = accounts.tax_id_normalized
    where bill_to.bill_to_id not in (select by_reference.bill_to_id from by_reference)
    qualify count(*) over (partition by bill_to.bill_to_id) = 1

),

by_name as (

    select
        bill_to.bill_to_id,
        accounts.account_id,
        'name_and_country' as match_method
    from bill_to
    inner join accounts
        on
            bill_to.bill_to_name_normalized = accounts.account_name_normalized
            and bill_to.country_code = accounts.country_code
    where
        bill_to.bill_to_id not in (select by_reference.bill_to_id from by_reference)
        and bill_to.bill_to_id not in (select by_tax_id.bill_to_id from by_tax_id)
    qualify count(*) over (partition by bill_to.bill_to_id) = 1  -- an ambiguous name is no match

),

matches as (

    select * from by_reference
    union all
    select * from by_tax_id
    union all
    select * from by_name

),

final as (

    select
        bill_to.bill_to_id,
        bill_to.bill_to_name,
        bill_to.country_code,
        matches.account_id,
        coalesce(matches.match_method, 'unmatched') as match_method,
        matches.account_id is not null as is_matched,
        coalesce(hierarchy.ultimate_parent_id, bill_to.bill_to_id) as customer_id

    from bill_to
    left join matches on bill_to.bill_to_id = matches.bill_to_id
    left join hierarchy on matches.account_id = hierarchy.account_id

)

select * from final

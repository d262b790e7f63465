-- Every CRM account with its ultimate parent, however deep the hierarchy (the customer schema rule).

with recursive

accounts as (

    select
        account_id,
        parent_account_id
    from {{ ref('stg_crm__accounts') }}

),

chains as (

    select
        account_id,
        account_id as ancestor_id,
        parent_account_id as next_parent_id,
        0 as depth,
        {{ list_of('account_id') }} as path

    from accounts

    union all

    select
        chains.account_id,
        parents.account_id as ancestor_id,
        parents.parent_account_id as next_parent_id,
        chains.depth + 1 as depth,
        {{ list_prepend_element('parents.account_id', 'chains.path') }} as path

    from chains
    inner join accounts as parents on chains.next_parent_id = parents.account_id
    where chains.depth < 20  -- a cycle in the CRM cannot loop forever

),

tops as (

    -- the chain ends at an account without a parent (or whose parent the CRM never delivered)
    select *
    from chains
    where
        next_parent_id is null
        or next_parent_id not in (select accounts.account_id from accounts)

),

final as (

    select
        account_id,
        ancestor_id as ultimate_parent_id,
        depth,
        {{ list_join('path', ' > ') }} as parent_chain

    from tops

)

select * from final

-- The event log of the contract data state: one row per transition, with its cause and how long the new
-- state lasted (valid until the next transition).

with

changes as (

    select * from {{ ref('stg_erp__contract_status_changes') }}

),

contracts as (

    select
        contract_id,
        bill_to_id
    from {{ ref('stg_erp__contracts') }}
    where not is_deleted

),

bill_to as (

    select
        bill_to_id,
        customer_id
    from {{ ref('int_bill_to_customers_resolved') }}

),

final as (

    select
        changes.contract_status_change_id as contract_state_event_id,
        changes.contract_id,
        bill_to.customer_id,
        changes.from_status,
        changes.to_status,
        changes.changed_at,
        cast(changes.changed_at as date) as changed_date,
        changes.change_reason as cause,
        lead(cast(changes.changed_at as date)) over (
            partition by changes.contract_id order by changes.changed_at, changes.contract_status_change_id
        ) as valid_until_date

    from changes
    inner join contracts on changes.contract_id = contracts.contract_id
    inner join bill_to on contracts.bill_to_id = bill_to.bill_to_id

)

select * from final

-- Contract state timelines: one row per spell of a status, [valid_from_date, valid_to_date).
-- A contract that changes twice in a day is in its last status at the day's end.

with

changes as (

    select * from {{ ref('stg_erp__contract_status_changes') }}

),

contracts as (

    select * from {{ ref('stg_erp__contracts') }}
    where not is_deleted

),

customers as (

    select
        bill_to_id,
        customer_id
    from {{ ref('int_bill_to_customers_resolved') }}

),

end_of_day as (

    select
        contract_id,
        to_status as status,
        cast(changed_at as date) as changed_date,
        change_reason

    from changes
    qualify row_number() over (
        partition by contract_id, cast(changed_at as date)
        order by changed_at desc, contract_status_change_id desc
    ) = 1

),

spells as (

    select
        contract_id,
        status,
        changed_date as valid_from_date,
        change_reason,
        lead(changed_date) over (partition by contract_id order by changed_date) as valid_to_date

    from end_of_day

),

final as (

    select
        spells.contract_id,
        customers.customer_id,
        contracts.currency_code,
        contracts.mrr_amount,
        spells.status,
        spells.status in ({{ sql_list(var('live_contract_states')) }}) as is_live,
        spells.valid_from_date,
        spells.valid_to_date,
        spells.change_reason

    from spells
    inner join contracts on spells.contract_id = contracts.contract_id
    inner join customers on contracts.bill_to_id = customers.bill_to_id

)

select * from final

with

contracts as (

    select * from {{ ref('stg_erp__contracts') }}
    where not is_deleted

),

bill_to as (

    select
        bill_to_id,
        customer_id
    from {{ ref('int_bill_to_customers_resolved') }}

),

spells as (

    select * from {{ ref('int_contracts_status_spells') }}

),

milestones as (

    select
        contract_id,
        min(valid_from_date) filter (where is_live) as go_live_date,
        min(valid_from_date) filter (where status = 'ended') as ended_date

    from spells
    group by 1

),

final as (

    select
        contracts.contract_id,
        bill_to.customer_id,
        contracts.bill_to_id,
        contracts.product_id,
        contracts.currency_code,
        contracts.mrr_amount,
        contracts.total_contract_value,
        contracts.services_amount,
        contracts.term_months,
        contracts.signed_date,
        milestones.go_live_date,
        milestones.ended_date,
        contracts.current_status

    from contracts
    inner join bill_to on contracts.bill_to_id = bill_to.bill_to_id
    left join milestones on contracts.contract_id = milestones.contract_id

)

select * from final

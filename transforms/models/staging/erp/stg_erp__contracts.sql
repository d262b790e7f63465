with

source as (

    select * from {{ source('erp', 'contracts') }}

),

renamed as (

    select
        contract_no as contract_id,
        customer_no as bill_to_id,
        product_code as product_id,
        currency as currency_code,
        monthly_amount as mrr_amount,
        total_value as total_contract_value,
        services_amount,
        term_months,
        signed_on as signed_date,
        go_live_on as planned_go_live_date,
        status as current_status,
        status_changed_at,
        end_on as end_date,
        created_at,
        updated_at,
        is_deleted,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by contract_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

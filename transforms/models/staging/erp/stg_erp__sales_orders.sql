with

source as (

    select * from {{ source('erp', 'sales_orders') }}

),

renamed as (

    select
        order_no as sales_order_id,
        customer_no as bill_to_id,
        contract_no as contract_id,
        order_date as ordered_date,
        currency as currency_code,
        total_amount,
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
    qualify row_number() over (partition by sales_order_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

with

source as (

    select * from {{ source('erp', 'sales_order_lines') }}

),

renamed as (

    select
        line_id as sales_order_line_id,
        order_no as sales_order_id,
        line_no as line_number,
        product_code as product_id,
        quantity,
        unit_price,
        line_amount,
        updated_at,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify
        row_number() over (partition by sales_order_line_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

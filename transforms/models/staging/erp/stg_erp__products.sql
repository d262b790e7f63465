with

source as (

    select * from {{ source('erp', 'products') }}

),

renamed as (

    select
        product_code as product_id,
        {{ normalize_text('description') }} as product_name,
        product_type,
        list_price as list_price_usd,
        updated_at,
        is_deleted,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by product_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

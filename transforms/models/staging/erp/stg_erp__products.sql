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
        _extracted_at

    from source

),

final as (

    select * exclude (_extracted_at)
    from renamed
    qualify row_number() over (partition by product_id order by updated_at desc, _extracted_at desc) = 1

)

select * from final

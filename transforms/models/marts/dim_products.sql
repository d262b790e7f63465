with

products as (

    select * from {{ ref('stg_erp__products') }}

),

final as (

    select
        product_id,
        product_name,
        product_type,
        list_price_usd
    from products
    where not is_deleted

)

select * from final

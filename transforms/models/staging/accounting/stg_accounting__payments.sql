with

source as (

    select * from {{ source('accounting', 'payments') }}

),

renamed as (

    select
        payment_no as payment_id,
        invoice_no as invoice_id,
        customer_id as bill_to_id,
        payment_date,
        currency as currency_code,
        amount as payment_amount,
        method as payment_method,
        _partition as loaded_partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_record_hash') }}
    from renamed
    qualify row_number() over (partition by payment_id order by loaded_partition desc, _record_hash) = 1

)

select * from final

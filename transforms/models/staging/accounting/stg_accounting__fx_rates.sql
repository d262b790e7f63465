with

source as (

    select * from {{ source('accounting', 'fx_rates') }}

),

renamed as (

    select
        rate_date,
        currency as currency_code,
        usd_per_unit,
        _extracted_at

    from source

),

final as (

    select * exclude (_extracted_at)
    from renamed
    qualify row_number() over (partition by rate_date, currency_code order by _extracted_at desc) = 1

)

select * from final

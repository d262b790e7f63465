with

source as (

    select * from {{ source('accounting', 'fx_rates') }}

),

renamed as (

    select
        rate_date,
        currency as currency_code,
        usd_per_unit,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by rate_date, currency_code order by _partition desc, _record_hash) = 1

)

select * from final

-- Daily FX rates (USD per unit), the rates every conversion to USD uses.

with

rates as (

    select * from {{ ref('stg_accounting__fx_rates') }}

),

final as (

    select
        rate_date,
        currency_code,
        usd_per_unit
    from rates

)

select * from final

with

source as (

    select * from {{ source('crm', 'opportunities') }}

),

renamed as (

    select
        Id as opportunity_id,
        AccountId as account_id,
        {{ normalize_text('Name') }} as opportunity_name,
        StageName as stage_name,
        Amount as amount,
        CurrencyIsoCode as currency_code,
        CloseDate as expected_close_date,
        IsClosed as is_closed,
        IsWon as is_won,
        CreatedDate as created_at,
        SystemModstamp as updated_at,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by opportunity_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

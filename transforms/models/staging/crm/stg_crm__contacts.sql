with

source as (

    select * from {{ source('crm', 'contacts') }}

),

renamed as (

    select
        Id as contact_id,
        AccountId as account_id,
        {{ normalize_text('FirstName') }} as first_name,
        {{ normalize_text('LastName') }} as last_name,
        {{ normalize_email('Email') }} as email,
        {{ normalize_text('Phone') }} as phone,
        {{ normalize_text('Title') }} as job_title,
        CreatedDate as created_at,
        SystemModstamp as updated_at,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by contact_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

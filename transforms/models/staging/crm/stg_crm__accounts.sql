with

source as (

    select * from {{ source('crm', 'accounts') }}

),

renamed as (

    select
        Id as account_id,
        {{ normalize_text('Name') }} as account_name,
        {{ normalize_company_name('Name') }} as account_name_normalized,
        nullif(trim(ParentId), '') as parent_account_id,
        {{ country_code('BillingCountry') }} as country_code,
        {{ normalize_tax_id('TaxId') }} as tax_id_normalized,
        Website as website,
        Industry as industry,
        CreatedDate as created_at,
        SystemModstamp as updated_at,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by account_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

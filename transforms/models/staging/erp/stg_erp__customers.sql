with

source as (

    select * from {{ source('erp', 'customers') }}

),

renamed as (

    select
        customer_no as bill_to_id,
        {{ normalize_text('customer_name') }} as bill_to_name,
        {{ normalize_company_name('customer_name') }} as bill_to_name_normalized,
        {{ country_code('country') }} as country_code,
        {{ normalize_tax_id('tax_number') }} as tax_id_normalized,
        nullif(trim(crm_account_ref), '') as crm_account_id,
        currency as currency_code,
        credit_limit,
        created_on as created_date,
        updated_at,
        is_deleted,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by bill_to_id order by updated_at desc, _partition desc, _record_hash) = 1

)

select * from final

{{ config(
    materialized=('view' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='invoice_id',
    on_schema_change='fail',
    post_hook="{{ delete_records_no_longer_loaded('accounting', 'invoices', 'invoice_no', 'invoice_id') }}"
) }}

-- Incremental on DuckDB: a run recomputes the records whose versions its window loaded, each from all its
-- versions (macros/incremental_staging.sql, docs/decisions/0065).

with

source as (

    select * from {{ source('accounting', 'invoices') }}
    {{ only_records_loaded_in_window('accounting', 'invoices', 'invoice_no', 'invoice_id') }}

),

renamed as (

    select
        invoice_no as invoice_id,
        customer_id as bill_to_id,
        invoice_date,
        due_date,
        currency as currency_code,
        amount as invoice_amount,
        invoice_type,
        _partition as loaded_partition,
        _record_hash,
        nullif(trim(contract_ref), '') as contract_id

    from source

),

final as (

    -- the same line twice in an export is one invoice
    select {{ star_except('_record_hash') }}
    from renamed
    qualify row_number() over (partition by invoice_id order by loaded_partition desc, _record_hash) = 1

)

select * from final

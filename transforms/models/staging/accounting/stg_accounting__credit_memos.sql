{{ config(
    materialized=('view' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='credit_memo_id',
    on_schema_change='fail',
    post_hook="{{ delete_records_no_longer_loaded('accounting', 'credit_memos', 'memo_no', 'credit_memo_id') }}"
) }}

-- Incremental on DuckDB: a run recomputes the records whose versions its window loaded, each from all its
-- versions (macros/incremental_staging.sql, docs/decisions/0065).

with

source as (

    select * from {{ source('accounting', 'credit_memos') }}
    {{ only_records_loaded_in_window('accounting', 'credit_memos', 'memo_no', 'credit_memo_id') }}

),

renamed as (

    select
        memo_no as credit_memo_id,
        invoice_no as invoice_id,
        customer_id as bill_to_id,
        memo_date as credit_memo_date,
        currency as currency_code,
        amount as credit_amount,
        reason as credit_reason,
        _partition as loaded_partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_record_hash') }}
    from renamed
    qualify row_number() over (partition by credit_memo_id order by loaded_partition desc, _record_hash) = 1

)

select * from final

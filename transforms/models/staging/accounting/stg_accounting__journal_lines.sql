{{ config(
    materialized=('view' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='journal_line_id',
    on_schema_change='fail',
    post_hook="{{ delete_records_no_longer_loaded('accounting', 'journal_lines', journal_line_key(), 'journal_line_id') }}"
) }}

-- Incremental on DuckDB: a run recomputes the records whose versions its window loaded, each from all its
-- versions (macros/incremental_staging.sql, docs/decisions/0065).

with

source as (

    select * from {{ source('accounting', 'journal_lines') }}
    {{ only_records_loaded_in_window('accounting', 'journal_lines', journal_line_key(), 'journal_line_id') }}

),

renamed as (

    select
        {{ journal_line_key() }} as journal_line_id,
        journal_no as journal_id,
        line_no as line_number,
        posting_date,
        account as account_code,
        {{ normalize_text('account_name') }} as account_name,
        {{ starts_with('account', "'" ~ var('revenue_account_prefix') ~ "'") }} as is_revenue_account,
        debit as debit_amount,
        credit as credit_amount,
        currency as currency_code,
        reference,
        description,
        _partition as loaded_partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_record_hash') }}
    from renamed
    qualify row_number() over (partition by journal_line_id order by loaded_partition desc, _record_hash) = 1

)

select * from final

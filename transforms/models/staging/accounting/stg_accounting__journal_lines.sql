with

source as (

    select * from {{ source('accounting', 'journal_lines') }}

),

renamed as (

    select
        journal_no || '-' || lpad(cast(line_no as string), 3, '0') as journal_line_id,
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

{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_loaded_window(this) }}"
) }}

with

journal_lines as (

    select * from {{ ref('stg_accounting__journal_lines') }}
    {% if is_incremental() %}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
    {% endif %}

),

final as (

    select
        journal_line_id,
        journal_id,
        line_number,
        posting_date,
        account_code,
        account_name,
        is_revenue_account,
        debit_amount,
        credit_amount,
        currency_code,
        reference,
        description,
        loaded_partition,
        case when is_revenue_account then credit_amount - debit_amount else 0 end as revenue_amount,
        posting_date < loaded_partition as is_late_arrival

    from journal_lines

)

select * from final

{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_loaded_window(this) }}"
) }}

with

credit_memos as (

    select * from {{ ref('stg_accounting__credit_memos') }}
    {% if is_incremental() %}
        where loaded_partition between {{ window_start() }} and {{ window_end() }}
    {% endif %}

),

bill_to as (

    select
        bill_to_id,
        customer_id
    from {{ ref('int_bill_to_customers_resolved') }}

),

final as (

    select
        credit_memos.credit_memo_id,
        credit_memos.invoice_id,
        bill_to.customer_id,
        credit_memos.bill_to_id,
        credit_memos.credit_memo_date,
        credit_memos.currency_code,
        credit_memos.credit_amount,
        credit_memos.credit_reason,
        credit_memos.loaded_partition

    from credit_memos
    left join bill_to on credit_memos.bill_to_id = bill_to.bill_to_id

)

select * from final

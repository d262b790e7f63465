{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='credit_memo_id',
    on_schema_change='fail',
    post_hook="{{ delete_facts_no_longer_staged('stg_accounting__credit_memos', 'credit_memo_id') }}"
) }}

-- Incremental on DuckDB: a run recomputes the records its window staged, those released from quarantine into
-- older partitions, and those it held from the window (macros/incremental_staging.sql, decision 0067).

with

credit_memos as (

    select * from {{ ref('stg_accounting__credit_memos') }}
    {{ only_staged_records_of_window('accounting', 'credit_memos', 'credit_memo_id') }}

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

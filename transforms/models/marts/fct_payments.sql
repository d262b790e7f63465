{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='payment_id',
    on_schema_change='fail',
    post_hook="{{ delete_facts_no_longer_staged('stg_accounting__payments', 'payment_id') }}"
) }}

-- Incremental on DuckDB: a run recomputes the records its window staged, those released from quarantine into
-- older partitions, and those it held from the window (macros/incremental_staging.sql, decision 0067).

with

payments as (

    select * from {{ ref('stg_accounting__payments') }}
    {{ only_staged_records_of_window('accounting', 'payments', 'payment_id') }}

),

bill_to as (

    select
        bill_to_id,
        customer_id
    from {{ ref('int_bill_to_customers_resolved') }}

),

rates as (

    select * from {{ ref('stg_accounting__fx_rates') }}

),

final as (

    select
        payments.payment_id,
        payments.invoice_id,
        bill_to.customer_id,
        payments.bill_to_id,
        payments.payment_date,
        payments.currency_code,
        payments.payment_amount,
        {{ to_usd('payments.payment_amount', 'rates.usd_per_unit') }} as payment_amount_usd,
        payments.payment_method,
        payments.loaded_partition

    from payments
    left join bill_to on payments.bill_to_id = bill_to.bill_to_id
    left join rates on payments.payment_date = rates.rate_date and payments.currency_code = rates.currency_code

)

select * from final

{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_loaded_window(this) }}"
) }}

with

payments as (

    select * from {{ ref('stg_accounting__payments') }}
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

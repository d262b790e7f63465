{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_loaded_window(this) }}"
) }}

with

invoices as (

    select * from {{ ref('stg_accounting__invoices') }}
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
        invoices.invoice_id,
        bill_to.customer_id,
        invoices.bill_to_id,
        invoices.contract_id,
        invoices.invoice_date,
        invoices.due_date,
        invoices.currency_code,
        invoices.invoice_amount,
        {{ to_usd('invoices.invoice_amount', 'rates.usd_per_unit') }} as invoice_amount_usd,
        invoices.invoice_type,
        invoices.loaded_partition

    from invoices
    left join bill_to on invoices.bill_to_id = bill_to.bill_to_id
    left join rates on invoices.invoice_date = rates.rate_date and invoices.currency_code = rates.currency_code

)

select * from final

{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ note_and_delete_invoices_changed() }}",
    post_hook="{{ keep_invoice_documents() }}"
) }}

-- When each invoice was fully settled (payments plus credit memos reach its amount), if it was. Incremental on
-- DuckDB: a run recomputes the invoices whose staged row, payments or credit memos changed since the last build,
-- as they are now and as that build read them (macros/incremental_invoices.sql, decision 0088).

with

invoices as (

    select * from {{ ref('stg_accounting__invoices') }}
    {{- only_invoices_changed() }}

),

settlements as (

    select
        invoice_id,
        payment_date as settled_on,
        payment_amount as amount
    from {{ ref('stg_accounting__payments') }}
    {{- only_invoices_changed() }}
    union all
    select
        invoice_id,
        credit_memo_date,
        credit_amount
    from {{ ref('stg_accounting__credit_memos') }}
    {{- only_invoices_changed() }}

),

daily as (

    select
        invoice_id,
        settled_on,
        sum(amount) as amount
    from settlements
    group by 1, 2

),

running as (

    select
        invoice_id,
        settled_on,
        sum(amount) over (partition by invoice_id order by settled_on rows unbounded preceding) as settled_amount

    from daily

),

final as (

    select
        invoices.invoice_id,
        invoices.bill_to_id,
        invoices.due_date,
        invoices.invoice_amount,
        min(running.settled_on) filter (where running.settled_amount >= invoices.invoice_amount) as settled_date

    from invoices
    left join running on invoices.invoice_id = running.invoice_id
    group by 1, 2, 3, 4

)

select * from final

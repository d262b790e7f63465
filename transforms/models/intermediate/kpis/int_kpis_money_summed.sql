{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ note_and_delete_money_days() }}",
    post_hook="{{ keep_money_inputs() }}"
) }}

-- Money KPIs per day: amounts summed per currency, converted at the day's rate to the cent, then added
-- (registry: money.conversion). Incremental on DuckDB: a run recomputes the days from the first one its
-- documents or the contracts, opportunities and rates changed since the last build can change
-- (macros/incremental_money.sql, decision 0083); the open receivables carry the balance of the days before.

{%- set from_date = money_recompute_from() %}

with

dates as (

    select date_day from {{ ref('dim_dates') }}
    where date_day >= {{ from_date }}

),

rates as (

    select
        rate_date as date_day,
        currency_code,
        usd_per_unit
    from {{ ref('fct_fx_rates') }}

),

contracts as (

    select * from {{ ref('fct_contracts') }}

),

contract_events as (

    select * from {{ ref('fct_contract_state_events') }}

),

invoices as (

    select * from {{ ref('fct_invoices') }}

),

payments as (

    select * from {{ ref('fct_payments') }}

),

credit_memos as (

    select * from {{ ref('fct_credit_memos') }}

),

gl_entries as (

    select * from {{ ref('fct_gl_entries') }}

),

opportunities as (

    select * from {{ ref('fct_opportunities') }}

),

live_spells as (

    select
        contract_events.changed_date as valid_from_date,
        contract_events.valid_until_date,
        contracts.currency_code,
        contracts.mrr_amount

    from contract_events
    inner join contracts on contract_events.contract_id = contracts.contract_id
    where
        contract_events.to_status in ({{ sql_list(var('live_contract_states')) }})
        and (contract_events.valid_until_date is null or contract_events.valid_until_date > {{ from_date }})

),

mrr as (

    select
        dates.date_day,
        live_spells.currency_code,
        'mrr_usd' as kpi_name,
        sum(live_spells.mrr_amount) as amount
    from live_spells
    inner join dates
        on
            live_spells.valid_from_date <= dates.date_day
            and (live_spells.valid_until_date is null or live_spells.valid_until_date > dates.date_day)
    group by 1, 2

),

bookings as (

    select
        signed_date,
        currency_code,
        'bookings_usd' as kpi_name,
        sum(total_contract_value) as amount
    from contracts
    where signed_date >= {{ from_date }}
    group by 1, 2

),

billings as (

    select
        invoice_date,
        currency_code,
        'billings_usd' as kpi_name,
        sum(invoice_amount) as amount
    from invoices
    where invoice_date >= {{ from_date }}
    group by 1, 2

),

revenue as (

    select
        posting_date,
        currency_code,
        'revenue_usd' as kpi_name,
        sum(revenue_amount) as amount
    from gl_entries
    where is_revenue_account and posting_date >= {{ from_date }}
    group by 1, 2

),

cash as (

    select
        payment_date,
        currency_code,
        'cash_collected_usd' as kpi_name,
        sum(payment_amount) as amount
    from payments
    where payment_date >= {{ from_date }}
    group by 1, 2

),

receivable_moves as (

    select
        invoice_date as date_day,
        currency_code,
        invoice_amount as amount
    from invoices
    union all
    select
        payment_date,
        currency_code,
        -payment_amount as amount
    from payments
    union all
    select
        credit_memo_date,
        currency_code,
        -credit_amount as amount
    from credit_memos

),

receivable_daily as (

    select
        date_day,
        currency_code,
        sum(amount) as amount
    from receivable_moves
    group by 1, 2

),

-- the receivables of the days before those recomputed: the moves of the days with a rate, as below
opening_ar as (

    select
        rates.currency_code,
        sum(receivable_daily.amount) as amount
    from rates
    inner join receivable_daily
        on rates.date_day = receivable_daily.date_day and rates.currency_code = receivable_daily.currency_code
    where rates.date_day < {{ from_date }}
    group by 1

),

open_ar as (

    select
        rates.date_day,
        rates.currency_code,
        'open_ar_usd' as kpi_name,
        coalesce(opening_ar.amount, 0) + sum(coalesce(receivable_daily.amount, 0)) over (
            partition by rates.currency_code order by rates.date_day rows unbounded preceding
        ) as amount

    from rates
    left join receivable_daily
        on rates.date_day = receivable_daily.date_day and rates.currency_code = receivable_daily.currency_code
    left join opening_ar on rates.currency_code = opening_ar.currency_code
    where rates.date_day >= {{ from_date }}

),

pipeline as (

    select
        dates.date_day,
        opportunities.currency_code,
        'pipeline_usd' as kpi_name,
        sum(opportunities.amount) as amount
    from opportunities
    inner join dates
        on
            opportunities.created_date <= dates.date_day
            and (opportunities.closed_date is null or opportunities.closed_date > dates.date_day)
    where opportunities.closed_date is null or opportunities.closed_date > {{ from_date }}
    group by 1, 2

),

per_currency as (

    select * from mrr
    union all
    select * from bookings
    union all
    select * from billings
    union all
    select * from revenue
    union all
    select * from cash
    union all
    select * from open_ar
    union all
    select * from pipeline

),

converted as (

    select
        per_currency.date_day,
        per_currency.kpi_name,
        sum({{ to_usd('per_currency.amount', 'rates.usd_per_unit') }}) as value

    from per_currency
    inner join rates
        on per_currency.date_day = rates.date_day and per_currency.currency_code = rates.currency_code
    group by 1, 2

),

final as (

    select * from converted
    union all
    select
        date_day,
        'arr_usd' as kpi_name,
        12 * value as value
    from converted
    where kpi_name = 'mrr_usd'

)

select * from final

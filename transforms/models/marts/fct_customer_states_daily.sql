{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ note_and_delete_customer_states() }}",
    post_hook="{{ keep_states_inputs() }}"
) }}

-- depends_on: {{ ref('fct_gl_entries') }}
-- depends_on: {{ ref('fct_payments') }}
-- depends_on: {{ ref('fct_credit_memos') }}
-- depends_on: {{ ref('fct_invoices') }}

-- One row per customer per day with its state at the day's end (registry: customer_states) and flags.
-- Incremental on DuckDB: a run recomputes the customers whose inputs changed since the last build, from the
-- first day they can change (or affected_from(), if earlier), and every customer on the days dim_dates added;
-- the others keep their rows (macros/incremental_states.sql, decision 0081).

with

dates as (

    select date_day from {{ ref('dim_dates') }}

),

periods as (

    -- the definitions in force per range of days (registry and adopted changes: docs/definitions.md)
    select * from {{ ref('registry_definition_periods') }}

),

customers as (

    select customer_id from {{ ref('dim_customers') }}

),

targets as (

    -- the customers to recompute and the first day of each (every customer from the first date in a full build)
    select * from {{ customers_to_recompute(ref('dim_customers')) }}

),

spells as (

    select
        spells.*,
        targets.from_date as recomputed_from_date

    from {{ ref('int_contracts_status_spells') }} as spells
    inner join targets on spells.customer_id = targets.customer_id

),

invoices as (

    select
        bill_to.customer_id,
        settled.due_date,
        settled.settled_date,
        targets.from_date as recomputed_from_date

    from {{ ref('int_invoices_settled') }} as settled
    inner join {{ ref('int_bill_to_customers_resolved') }} as bill_to on settled.bill_to_id = bill_to.bill_to_id
    inner join targets on bill_to.customer_id = targets.customer_id

),

first_day as (

    select min(dates.date_day) as first_date from dates

),

first_recomputed as (

    select min(from_date) as from_date from targets

),

bounds as (

    -- the day before the first recomputed day gives each customer its previous state
    select
        greatest(
            min(dates.date_day),
            cast(min(first_recomputed.from_date) - interval 1 day as date)
        ) as from_date,
        max(dates.date_day) as to_date

    from dates, first_recomputed

),

days as (

    select dates.date_day
    from dates, bounds
    where dates.date_day between bounds.from_date and bounds.to_date

    union all

    -- on a full build, the day before the first: the customers the systems already had when the data begins
    -- (an installed base is not new on the first day), only to give the first day its previous state
    select cast(bounds.from_date - interval 1 day as date) as date_day
    from bounds
    where bounds.from_date = (select first_day.first_date from first_day)

),

days_ruled as (

    -- each day under the definitions of each period it is judged by: its own, and the next day's when a period
    -- starts the next day (a customer's state is judged against the day before under the same definitions,
    -- so a change from a date never makes a customer new or churned by itself)
    select
        days.date_day,
        periods.period,
        periods.delinquency_days,
        days.date_day >= periods.effective_from as is_in_period

    from days
    inner join periods
        on days.date_day between cast(periods.effective_from - interval 1 day as date) and periods.effective_to

),

contract_counts as (

    select
        spells.customer_id,
        days.date_day,
        count(*) filter (where spells.is_live) as live_contract_count,
        count(*) filter (where spells.status = 'paused') as paused_contract_count

    from spells
    inner join days
        on
            spells.valid_from_date <= days.date_day
            and (spells.valid_to_date is null or spells.valid_to_date > days.date_day)
            and days.date_day >= cast(spells.recomputed_from_date - interval 1 day as date)
    group by 1, 2

),

milestones as (

    select
        customer_id,
        min(valid_from_date) filter (where status = 'signed') as first_signed_date,
        min(valid_from_date) filter (where is_live) as first_live_date

    from spells
    group by 1

),

delinquent as (

    select distinct
        invoices.customer_id,
        days.date_day,
        days.period
    from invoices
    inner join days_ruled as days
        on
            days.date_day > invoices.due_date + days.delinquency_days
            and (invoices.settled_date is null or invoices.settled_date > days.date_day)
            and days.date_day >= cast(invoices.recomputed_from_date - interval 1 day as date)

),

facts as (

    -- the facts the registry's state conditions are written in (registry/enterprise.yaml, customer_states)
    select
        customers.customer_id,
        days.date_day,
        days.period,
        days.is_in_period,
        targets.from_date as recomputed_from_date,
        coalesce(contract_counts.live_contract_count, 0) as live_contracts,
        coalesce(contract_counts.paused_contract_count, 0) as paused_contracts,
        coalesce(milestones.first_live_date <= days.date_day, false) as ever_live,
        coalesce(milestones.first_signed_date <= days.date_day, false) as ever_signed,
        delinquent.customer_id is not null as delinquent

    from customers
    inner join targets on customers.customer_id = targets.customer_id
    -- from the day before the customer's first recomputed day, whose state only serves lag()
    inner join days_ruled as days on days.date_day >= cast(targets.from_date - interval 1 day as date)
    left join contract_counts
        on customers.customer_id = contract_counts.customer_id and days.date_day = contract_counts.date_day
    left join milestones on customers.customer_id = milestones.customer_id
    left join delinquent
        on
            customers.customer_id = delinquent.customer_id
            and days.date_day = delinquent.date_day
            and days.period = delinquent.period

),

states as (

    select
        customer_id,
        date_day,
        period,
        is_in_period,
        recomputed_from_date,
        {{ customer_state_case('period') }} as state,
        delinquent as is_delinquent,
        live_contracts as live_contract_count,
        paused_contracts as paused_contract_count

    from facts

),

with_previous as (

    select
        *,
        coalesce(lag(state) over (partition by customer_id, period order by date_day), 'prospect') as previous_state

    from states

),

final as (

    select
        with_previous.customer_id,
        with_previous.date_day,
        with_previous.state,
        with_previous.previous_state,
        with_previous.is_delinquent,
        with_previous.live_contract_count,
        with_previous.paused_contract_count

    from with_previous
    -- the day before the recomputed ones, and before a period, only served lag()
    where
        with_previous.is_in_period
        and with_previous.date_day >= with_previous.recomputed_from_date
        and with_previous.date_day >= (select first_day.first_date from first_day)

)

select * from final

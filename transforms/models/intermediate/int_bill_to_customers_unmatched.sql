-- The exceptions of entity resolution: ERP bill-to entities no CRM account matches. They stay customers
-- in their own right (never dropped); this list is what a data steward works through.

with

resolved as (

    select * from {{ ref('int_bill_to_customers_resolved') }}

),

final as (

    select
        bill_to_id,
        bill_to_name,
        country_code,
        customer_id
    from resolved
    where not is_matched

)

select * from final

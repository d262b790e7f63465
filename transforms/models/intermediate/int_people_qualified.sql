{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ fail_if_built_without_a_column() }}",
        "{{ note_rows_untested('email', people_noted_for('int_people_qualified'), every_key=recomputes_every_person('int_people_qualified')) }}",
        "{{ delete_people_noted_for('int_people_qualified') }}",
    ],
    post_hook="{{ consume_people_notes('int_people_qualified', next_model='dim_people') }}"
) }}

-- People, not leads: one row per normalised email and period of definitions. Their first lead's day (the
-- earliest created date of their leads): the date a day's new and changed people cluster by, the months
-- publishing and the data products compare (docs/decisions/0087). An MQL on the first day any of
-- their leads qualified under the period's definitions (registry: mql); an SQL on the later of that day and
-- the first day sales accepted one of their leads. Incremental runs recompute the people whose leads
-- int_leads_qualified recomputed, by their addresses before and after (macros/incremental_people.sql).

with

leads as (

    select * from {{ ref('int_leads_qualified') }}{{ only_people_noted_for('int_people_qualified') }}

),

staged_leads as (

    select * from {{ ref('stg_crm__leads') }}{{ only_people_noted_for('int_people_qualified') }}

),

first_leads as (

    select
        email,
        min(cast(created_at as date)) as first_lead_date

    from staged_leads
    where email is not null
    group by 1

),

people as (

    select
        email,
        period,
        count(*) as lead_count,
        min(qualified_date) as mql_date,
        min(accepted_date) as accepted_date

    from leads
    where email is not null
    group by 1, 2

),

final as (

    select
        people.email,
        people.period,
        first_leads.first_lead_date,
        people.lead_count,
        people.mql_date,
        people.accepted_date,
        case
            when people.mql_date is not null and people.accepted_date is not null
                then greatest(people.mql_date, people.accepted_date)
        end as sql_date

    from people
    left join first_leads on people.email = first_leads.email

)

select * from final

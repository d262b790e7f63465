{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ note_rows_untested('email', people_noted_for('int_people_qualified'), every_key=recomputes_every_person('int_people_qualified')) }}",
        "{{ delete_people_noted_for('int_people_qualified') }}",
    ],
    post_hook="{{ consume_people_notes('int_people_qualified', next_model='dim_people') }}"
) }}

-- People, not leads: one row per normalised email and period of definitions. An MQL on the first day any of
-- their leads qualified under the period's definitions (registry: mql); an SQL on the later of that day and
-- the first day sales accepted one of their leads. Incremental runs recompute the people whose leads
-- int_leads_qualified recomputed, by their addresses before and after (macros/incremental_people.sql).

with

leads as (

    select * from {{ ref('int_leads_qualified') }}{{ only_people_noted_for('int_people_qualified') }}

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
        email,
        period,
        lead_count,
        mql_date,
        accepted_date,
        case
            when mql_date is not null and accepted_date is not null
                then greatest(mql_date, accepted_date)
        end as sql_date

    from people

)

select * from final

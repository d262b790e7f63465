{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook=[
        "{{ fail_if_built_without_a_column() }}",
        "{{ note_rows_untested('email', people_noted_for('dim_people'), every_key=recomputes_every_person('dim_people')) }}",
        "{{ delete_people_noted_for('dim_people') }}",
    ],
    post_hook="{{ consume_people_notes('dim_people') }}"
) }}

-- People, not leads: one row per normalised email, with their first lead's day first: the date column a
-- day's changes cluster by (docs/decisions/0087). An MQL on the first day any of their leads qualified
-- (registry: mql); an SQL on the later of that day and the first day sales accepted one of their leads. Judged
-- by the definitions in force now (the last period of seed registry_definition_periods); the funnel KPIs count
-- each day under its own period (int_kpis_funnel_counted). Incremental runs recompute the people
-- int_people_qualified recomputed (macros/incremental_people.sql).

with

people as (

    select * from {{ ref('int_people_qualified') }}{{ only_people_noted_for('dim_people') }}

),

current_period as (

    select max(period) as period from {{ ref('registry_definition_periods') }}

),

final as (

    select
        people.email,
        people.first_lead_date,
        people.lead_count,
        people.mql_date,
        people.accepted_date,
        people.sql_date

    from people
    inner join current_period on people.period = current_period.period

)

select * from final

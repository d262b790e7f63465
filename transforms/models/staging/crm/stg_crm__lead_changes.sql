{{ config(
    materialized=('view' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='lead_change_id',
    on_schema_change='fail',
    pre_hook=[
        "{{ note_leads_held_from_window() }}",
        "{{ note_rows_untested('lead_change_id', records_loaded_in_window('crm', 'lead_history', 'Id', 'lead_change_id')) }}",
    ],
    post_hook="{{ delete_records_no_longer_loaded('crm', 'lead_history', 'Id', 'lead_change_id') }}"
) }}

-- Incremental on DuckDB: a run recomputes the records whose versions its window loaded, each from all its
-- versions (macros/incremental_staging.sql, docs/decisions/0065). Written in lead order: the models keyed by the
-- lead read a window's leads through their key range (docs/decisions/0082).

with

source as (

    select * from {{ source('crm', 'lead_history') }}
    {{ only_records_loaded_in_window('crm', 'lead_history', 'Id', 'lead_change_id') }}

),

renamed as (

    select
        Id as lead_change_id,
        LeadId as lead_id,
        OldValue as old_value,
        NewValue as new_value,
        CreatedDate as changed_at,
        _partition as loaded_partition,
        _record_hash,
        lower(Field) as changed_field

    from source

),

final as (

    select {{ star_except('_record_hash') }}
    from renamed
    qualify row_number() over (partition by lead_change_id order by loaded_partition desc, _record_hash) = 1

)

select * from final
{{ in_key_order('lead_id, lead_change_id') }}

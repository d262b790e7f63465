with

source as (

    select * from {{ source('crm', 'lead_history') }}

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

with

source as (

    select * from {{ source('crm', 'opportunity_history') }}

),

renamed as (

    select
        Id as opportunity_stage_change_id,
        OpportunityId as opportunity_id,
        OldValue as from_stage,
        NewValue as to_stage,
        CreatedDate as changed_at,
        _partition,
        _record_hash

    from source
    where Field = 'StageName'

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by opportunity_stage_change_id order by _partition desc, _record_hash) = 1

)

select * from final

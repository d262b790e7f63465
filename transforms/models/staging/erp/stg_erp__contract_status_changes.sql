with

source as (

    select * from {{ source('erp', 'contract_status_history') }}

),

renamed as (

    select
        history_id as contract_status_change_id,
        contract_no as contract_id,
        from_status,
        to_status,
        changed_at,
        reason as change_reason,
        _partition,
        _record_hash

    from source

),

final as (

    select {{ star_except('_partition, _record_hash') }}
    from renamed
    qualify row_number() over (partition by contract_status_change_id order by _partition desc, _record_hash) = 1

)

select * from final

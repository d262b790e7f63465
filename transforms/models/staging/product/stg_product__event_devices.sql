{{ config(enabled=(target.type != 'spark')) }}

-- depends_on: {{ source('product', 'events') }}  (the batches that land events write the device map)

-- The device map: each anonymous device's first user, by the time received (dataops/ingest/events.py).

with

source as (

    select * from {{ product_lake('event_devices', '', {
        'device_id': 'varchar',
        'user_id': 'varchar',
        'first_received_at': 'timestamp',
    }) }} as landed

),

final as (

    select
        device_id,
        user_id,
        first_received_at

    from source

)

select * from final

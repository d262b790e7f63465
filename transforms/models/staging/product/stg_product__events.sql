{{ config(enabled=(target.type != 'spark')) }}

-- depends_on: {{ source('product', 'events') }}

-- The product's events as the lake holds them: one row per event_id, the first copy received that parsed,
-- its time corrected by the device's clock (dataops/ingest/events.py). Not on Spark yet (macros/product_lake.sql).

with

source as (

    select * from {{ product_lake('events', 'date=*/', {
        'event_id': 'varchar',
        'event_type': 'varchar',
        'event_name': 'varchar',
        'event_time': 'timestamp',
        'event_date': 'date',
        'received_at': 'timestamp',
        'user_id': 'varchar',
        'device_id': 'varchar',
        'account_ref': 'varchar',
        'platform': 'varchar',
        'app_version': 'varchar',
        'user_agent': 'varchar',
        'properties': 'varchar',
        'excluded': 'boolean',
        'known_type': 'boolean',
        '_batch_id': 'varchar',
    }) }} as landed

),

final as (

    select
        event_id,
        event_name,
        event_type as sent_event_type,
        event_time,
        event_date,
        received_at,
        user_id,
        device_id,
        account_ref,
        platform,
        app_version,
        user_agent,
        properties,
        excluded as is_excluded,
        known_type as is_known_type,
        _batch_id as batch_id

    from source

)

select * from final

{{ config(
    materialized=('view' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='lead_id',
    on_schema_change='fail',
    pre_hook=[
        "{{ note_leads_held_from_window() }}",
        "{{ note_rows_untested('lead_id', records_loaded_in_window('crm', 'leads', 'Id', 'lead_id')) }}",
    ],
    post_hook="{{ delete_records_no_longer_loaded('crm', 'leads', 'Id', 'lead_id') }}"
) }}

-- Incremental on DuckDB: a run recomputes the records whose versions its window loaded, each from all its
-- versions (macros/incremental_staging.sql, docs/decisions/0065). Written in lead order: the models keyed by the
-- lead read a window's leads through their key range (docs/decisions/0082).

with

source as (

    select * from {{ source('crm', 'leads') }}
    {{ only_records_loaded_in_window('crm', 'leads', 'Id', 'lead_id') }}

),

renamed as (

    select
        Id as lead_id,
        {{ normalize_text('FirstName') }} as first_name,
        {{ normalize_text('LastName') }} as last_name,
        {{ normalize_email('Email') }} as email,
        split_part({{ normalize_email('Email') }}, '@', 2) as email_domain,
        {{ normalize_text('Company') }} as company_name,
        Score as current_score,
        Status as crm_status,
        LeadSource as lead_source,
        CreatedDate as created_at,
        SystemModstamp as updated_at,
        _partition as loaded_partition,
        _record_hash

    from source

),

final as (

    select
        {{ star_except('_record_hash') }},
        email_domain not in ({{ sql_list(var('free_mail_domains')) }}) as is_business_email

    from renamed
    qualify row_number() over (partition by lead_id order by updated_at desc, loaded_partition desc, _record_hash) = 1

)

select * from final
{{ in_key_order('lead_id') }}

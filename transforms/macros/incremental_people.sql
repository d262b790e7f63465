{#- The people models (int_people_qualified, dim_people) are incremental on DuckDB by the people whose leads
    changed (docs/decisions/0076). A person's rows are an aggregate over the leads that carry their email, and
    a lead's row changes only when int_leads_qualified recomputes it; a corrected address moves a lead from one
    person to another, and once the lead's row is replaced nothing tells its former person. So
    int_leads_qualified notes, in its own transaction, the emails of the leads it recomputes as it held them
    before (a pre-hook) and after (a post-hook) in pipeline.people_to_recompute; int_people_qualified
    recomputes the noted people and hands the notes on to dim_people, which consumes them: each model takes the
    notes addressed to it in the transaction that writes its rows, so a build that stops between two of them,
    or a build of one of them alone, leaves the others' notes for the next build. A note without an email (a
    full build of the model before) means every person. On Spark the three are tables rebuilt whole and nothing
    is noted. -#}

{#- The notes' table, created by the first hook that writes to it (ledger_relation() finds it for the
    readers). -#}
{% macro people_notes() -%}
    {{ return(pipeline_table(
        'people_to_recompute', 'email varchar, model varchar, noted_at timestamp with time zone'
    )) }}
{%- endmacro %}

{#- int_leads_qualified's pre- and post-hook: the emails of the leads it recomputes, for int_people_qualified;
    every person after a full build (none before the first). -#}
{% macro note_people_of_recomputed_leads() -%}
    {{ return(adapter.dispatch('note_people_of_recomputed_leads')()) }}
{%- endmacro %}

{% macro default__note_people_of_recomputed_leads() -%}
    {%- if is_incremental() -%}
        insert into {{ people_notes() }}
        select distinct
            email,
            'int_people_qualified' as model,
            now() as noted_at
        from {{ this }}
        where email is not null and {{ lead_loaded_in_window('lead_id') }}
    {%- else -%}
        insert into {{ people_notes() }} values (null, 'int_people_qualified', now())
    {%- endif -%}
{%- endmacro %}

{% macro spark__note_people_of_recomputed_leads() -%}
    select 1
{%- endmacro %}

{#- Whether `model` recomputes every person: in a full build, when no notes were ever kept (the build before
    this change), or when a note to it asks for every person. Rendered at run time, so an incremental run
    with such a note builds as a full one would. -#}
{% macro recomputes_every_person(model) -%}
    {%- set notes = ledger_relation('people_to_recompute') if is_incremental() else none -%}
    {%- if notes is none -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set everyone = run_query(
        'select count(*) from ' ~ notes ~ " where model = '" ~ model ~ "' and email is null"
    ) -%}
    {{ return(everyone.columns[0].values()[0] > 0) }}
{%- endmacro %}

{#- The people noted for `model`, as a subquery. -#}
{% macro people_noted_for(model) -%}
    (select email from {{ ledger_relation('people_to_recompute') }} where model = '{{ model }}')
{%- endmacro %}

{#- Restricts a people model's input to the people noted for it, in incremental runs. -#}
{% macro only_people_noted_for(model) -%}
    {%- if not recomputes_every_person(model) %}
        where email in {{ people_noted_for(model) }}
    {%- endif -%}
{%- endmacro %}

{#- A people model's pre-hook (its strategy is `append`): the rows of the people it recomputes are deleted
    first, in its transaction, so a person left without a lead (every lead's address corrected away) is no
    longer listed. -#}
{% macro delete_people_noted_for(model) -%}
    {{ return(adapter.dispatch('delete_people_noted_for')(model)) }}
{%- endmacro %}

{% macro default__delete_people_noted_for(model) -%}
    {%- if not is_incremental() -%}
        select 1
    {%- elif recomputes_every_person(model) -%}
        delete from {{ this }}
    {%- else -%}
        delete from {{ this }} where email in {{ people_noted_for(model) }}
    {%- endif -%}
{%- endmacro %}

{% macro spark__delete_people_noted_for(model) -%}
    select 1
{%- endmacro %}

{#- A people model's post-hook: the notes to it are consumed, handed on to `next_model` if any (every person
    after a full build). -#}
{% macro consume_people_notes(model, next_model=none) -%}
    {{ return(adapter.dispatch('consume_people_notes')(model, next_model)) }}
{%- endmacro %}

{% macro default__consume_people_notes(model, next_model) -%}
    {%- if next_model is not none and is_incremental() -%}
        insert into {{ people_notes() }}
        select distinct
            email,
            '{{ next_model }}' as model,
            now() as noted_at
        from {{ people_notes() }}
        where model = '{{ model }}';
    {%- elif next_model is not none -%}
        insert into {{ people_notes() }} values (null, '{{ next_model }}', now());
    {%- endif %}
    delete from {{ people_notes() }} where model = '{{ model }}'
{%- endmacro %}

{% macro spark__consume_people_notes(model, next_model) -%}
    select 1
{%- endmacro %}

{#- When each invoice was settled (int_invoices_settled) is incremental on DuckDB by invoice (docs/decisions/0088):
    rebuilt whole, its cost grew with history (a running sum over every payment and credit memo ever staged, and
    every invoice's row written again). An invoice's row reads only its own staged row and the payments and credit
    memos staged against it, so a run recomputes the invoices a staged document of this run's changes can touch.
    The three staging models are incremental by the records a window loaded (decision 0065): the documents whose
    staged row can have changed since the last build are those staged now from the window's partitions or from a
    partition a load released orphans of their table into (decision 0067), and those staged, as the last build
    read them, from the window's partitions (a re-run of an old day that drops a document's newer version falls
    back to an older one, or to none). A document's invoice before the change is known only from what the last
    build read: a payment moved to another invoice, or dropped, leaves an invoice nothing in staging names. So the
    model keeps, for every staged document, its invoice and partition as it read them
    (pipeline.invoice_documents_seen, updated by its post-hook for the documents it recomputed, in the transaction
    that writes its rows), and its pre-hook notes the changed documents with their invoice now and before
    (pipeline.invoice_documents_changed), deletes those invoices' rows, and the model recomputes them. A full
    build, or a first build without the kept documents, recomputes every invoice. On Spark the model is a table
    rebuilt whole and nothing is kept or noted (dispatched hooks). -#}

{#- The staged documents of one kind (`document`: staging `model`, keyed by `key`), as the kept table holds them,
    optionally filtered by `where`. -#}
{% macro staged_invoice_documents(document, model, key, where='') -%}
    select
        '{{ document }}' as document,
        {{ key }} as document_id,
        invoice_id,
        loaded_partition
    from {{ ref(model) }}
    {{ where }}
{%- endmacro %}

{#- Every staged document (the invoices themselves among them). -#}
{% macro all_invoice_documents() -%}
    {{ staged_invoice_documents('invoice', 'stg_accounting__invoices', 'invoice_id') }}
    union all
    {{ staged_invoice_documents('payment', 'stg_accounting__payments', 'payment_id') }}
    union all
    {{ staged_invoice_documents('credit_memo', 'stg_accounting__credit_memos', 'credit_memo_id') }}
{%- endmacro %}

{#- The staged documents noted in `changed` (a relation of document, document_id). -#}
{% macro invoice_documents_noted(changed) -%}
    {%- set noted = "_id in (select document_id from " ~ changed ~ " where document = " -%}
    {{ staged_invoice_documents(
        'invoice', 'stg_accounting__invoices', 'invoice_id', "where invoice" ~ noted ~ "'invoice')"
    ) }}
    union all
    {{ staged_invoice_documents(
        'payment', 'stg_accounting__payments', 'payment_id', "where payment" ~ noted ~ "'payment')"
    ) }}
    union all
    {{ staged_invoice_documents(
        'credit_memo', 'stg_accounting__credit_memos', 'credit_memo_id', "where credit_memo" ~ noted ~ "'credit_memo')"
    ) }}
{%- endmacro %}

{#- The documents of one kind whose staged row this run's staging can have changed: staged now from a partition
    of the window or one a load released orphans of `table` into. -#}
{% macro invoice_documents_restaged(document, model, table, key) -%}
    select '{{ document }}' as document, {{ key }} as document_id from {{ ref(model) }}
    where loaded_partition between {{ window_start() }} and {{ window_end() }}
    union
    select '{{ document }}', {{ key }} from {{ ref(model) }}
    where loaded_partition in {{ released_partitions('accounting', table) }}
{%- endmacro %}

{% macro invoice_documents_seen() -%}
    {{ this.database }}.pipeline.invoice_documents_seen
{%- endmacro %}

{% macro invoice_documents_changed() -%}
    {{ this.database }}.pipeline.invoice_documents_changed
{%- endmacro %}

{#- The model's filter in an incremental run: only the invoices noted by the pre-hook. -#}
{% macro only_invoices_changed(column='invoice_id') -%}
    {%- if is_incremental() and target.type != 'spark' %}
        where {{ column }} in (select invoice_id from {{ invoice_documents_changed() }})
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook: notes the documents whose staged row can have changed since the last build, each with its
    invoice now and as the last build read it (every staged document in a first build without the kept ones),
    and deletes the rows of those invoices (every row without the kept ones). Nothing in a full build. -#}
{% macro note_and_delete_invoices_changed() -%}
    {{ return(adapter.dispatch('note_and_delete_invoices_changed')()) }}
{%- endmacro %}

{% macro default__note_and_delete_invoices_changed() -%}
    {%- if not is_incremental() -%}
        select 1
    {%- else -%}
        {%- set seen = ledger_relation('invoice_documents_seen') -%}
        create schema if not exists {{ this.database }}.pipeline;
        create or replace table {{ invoice_documents_changed() }} as
        {%- if seen is none %}
            select document, document_id, invoice_id from ({{ all_invoice_documents() }}) as documents
        {%- else %}
            with

            changed as (
                {{ invoice_documents_restaged('invoice', 'stg_accounting__invoices', 'invoices', 'invoice_id') }}
                union
                {{ invoice_documents_restaged('payment', 'stg_accounting__payments', 'payments', 'payment_id') }}
                union
                {{ invoice_documents_restaged(
                    'credit_memo', 'stg_accounting__credit_memos', 'credit_memos', 'credit_memo_id'
                ) }}
                union
                -- staged from a partition of the window as the last build read them
                select document, document_id from {{ seen }}
                where loaded_partition between {{ window_start() }} and {{ window_end() }}
            )

            -- each changed document with its invoice now and as the last build read it
            select document, document_id, invoice_id from ({{ invoice_documents_noted('changed') }}) as now_
            union
            select seen.document, seen.document_id, seen.invoice_id
            from {{ seen }} as seen
            inner join changed on seen.document = changed.document and seen.document_id = changed.document_id
        {%- endif %};
        {#- without the kept documents, an invoice no longer staged is known to no note: every row goes -#}
        delete from {{ this }}
        {%- if seen is not none %}
        where invoice_id in (select invoice_id from {{ invoice_documents_changed() }})
        {%- endif %}
    {%- endif -%}
{%- endmacro %}

{% macro spark__note_and_delete_invoices_changed() -%}
    select 1
{%- endmacro %}

{#- The post-hook: the kept documents follow what this build read, the noted documents replaced by their staged
    rows now (a document no longer staged leaves); every document in a full build or a first build without them,
    in partition order (a window's filter on the partition then skips the other row groups). -#}
{% macro keep_invoice_documents() -%}
    {{ return(adapter.dispatch('keep_invoice_documents')()) }}
{%- endmacro %}

{% macro default__keep_invoice_documents() -%}
    {%- if is_incremental() and ledger_relation('invoice_documents_seen') is not none -%}
        delete from {{ invoice_documents_seen() }}
        where (document, document_id) in (select document, document_id from {{ invoice_documents_changed() }});
        insert into {{ invoice_documents_seen() }}
        {{ invoice_documents_noted(invoice_documents_changed()) }}
    {%- else -%}
        create schema if not exists {{ this.database }}.pipeline;
        create or replace table {{ invoice_documents_seen() }} as
        select * from ({{ all_invoice_documents() }}) as documents
        order by loaded_partition
    {%- endif -%}
{%- endmacro %}

{% macro spark__keep_invoice_documents() -%}
    select 1
{%- endmacro %}

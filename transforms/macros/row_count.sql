{#- A table's rows once dbt has built it, logged for the Dagster step (docs/decisions/0080).

    The step reports each model as soon as dbt finishes it, while dbt goes on writing the warehouse, which no
    other process may open meanwhile: dbt counts, and the step reads the count from dbt's structured log (a
    JinjaLogInfo line that names the node). The project's post-hook, run outside the model's transaction, after
    it commits: after the model's own post-hooks, some of which delete rows. Views are not counted (a count runs
    the view's whole query); on Spark, whose materialisations run no hook outside a transaction, the step
    counts the tables once they are back in the build warehouse (dataops/transform/spark.py). -#}
{% macro log_row_count() %}
    {%- if execute and config.get('materialized') in ('table', 'incremental') -%}
        {%- set rows = run_query('select count(*) from ' ~ this).columns[0].values()[0] | int -%}
        {%- do log(this.schema ~ '.' ~ this.identifier ~ ': ' ~ rows ~ ' rows', info=True) -%}
    {%- endif -%}
{% endmacro %}

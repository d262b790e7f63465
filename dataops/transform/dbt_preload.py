"""Imported once by the dbt fork server as it starts (dataops/transform/dbt_server.py): dbt, the default
engine's adapter and the schemas dbt checks a command against, made before the server forks, so that no child
makes them again. What it allocates is kept out of the collector's scans (``gc.freeze``): a child's passes would
otherwise walk, and so copy, every page of it."""

import gc

from dataops.core.collector import collect_less_often
from dataops.transform.dbt_child import prepare

collect_less_often()
prepare("duckdb")
gc.freeze()

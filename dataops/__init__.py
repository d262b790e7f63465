"""The library: plain, tested Python the Dagster code location and the application call.

Rooms: ``core`` (settings, warehouse connections, digests), ``ingest`` (connectors, landing, contracts,
loading, volume breakers), ``transform`` (running the dbt project), ``publish`` (the analyst warehouse and
what it says), ``governance`` (policy, gateway, audit, catalog, archive), ``egress`` (dashboard, data
products, CRM write-back). No Dagster import and no command line here (tests/test_layers.py).
"""

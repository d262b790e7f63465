"""The application: the ``dataops`` command line, the HTTP servers and the demo.

The only layer that knows both the Dagster code location (``orchestration``) and the library
(``dataops``); it also starts the mock systems of record for a demo (``source_systems``).
"""

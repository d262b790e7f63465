"""The Dagster code location: Dagster only, thin; the work is done by functions in ``dataops``."""

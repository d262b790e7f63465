"""Running the dbt project (transforms/) with the registry's values and the platform's environment."""

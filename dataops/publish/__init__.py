"""Publishing the analyst warehouse, and reading what it says."""

"""The simulated enterprise: the world the pipeline reads, never imported by it.

``simulator`` generates a deterministic B2B software business; ``erp``, ``crm`` and ``accounting`` expose it
through the interfaces a real connector would use (SQLite, an HTTP API, daily CSV exports).
"""

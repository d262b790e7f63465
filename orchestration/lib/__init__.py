"""What the definitions in ``orchestration/defs`` share: partitions, resources, factories and names.

Nothing here is loaded as a definition by itself; the defs folder's modules build their definitions from it.
"""

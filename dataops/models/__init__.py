"""Models learned from the warehouse: the churn-risk model (features, labels, training, scoring, evaluation).

Plain library code, no Dagster and no CLI: the orchestration retrains and scores through it, the CLI's
``dataops model train/evaluate`` compares models with it (docs/churn-model.md).
"""

"""Prompt artifacts in the MLflow model registry: pyfunc packaging, guarded promotion,
rollback. This part (with pipelines/ and hooks.py) is where mlflow is used."""

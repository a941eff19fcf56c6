"""Hyperparameter search with Optuna: declarative spaces per method, equal trial budgets.

`space` turns `parameters_tuning.yml` into suggestions and run overrides; `study` runs an
equal-budget study that several processes can share (it imports neither torch nor the
methods, so a worker starts fast). No Kedro, no MLflow here: the `tuning` pipeline's node
trains each trial and logs it.
"""

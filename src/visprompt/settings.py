"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from visprompt.hooks import DataTrackingHook, RunListHook

# kedro-mlflow registers its own hook (one MLflow run per `kedro run`) through its entry point.
HOOKS = (RunListHook(), DataTrackingHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local/parameters_training.yml may change one run's option, not replace `training`
    # An environment (conf/gpu) merges into base key by key: with Kedro's default
    # (destructive) merge, `kedro run --env gpu --params training...` (the hub recipes)
    # replaced the whole `training` block with the few keys a recipe overrides.
    "merge_strategy": {"parameters": "soft"},
}

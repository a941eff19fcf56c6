"""Kedro project settings."""

import warnings

import kedro_mlflow  # noqa: F401  (imported here so that its logger level is set before ours)
from kedro.config import OmegaConfigLoader
from kedro.framework.project import LOGGING

from visprompt.hooks import DataTrackingHook, RunListHook
from visprompt.pipelines.console import ConsoleHook

# The comparison, profiling and registry nodes read every run's namespaced outputs
# (`<run>.train_summary`): names with a dot outside their own namespace, by design.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")

# MLflow and kedro-mlflow set their loggers' levels when imported, after Kedro applied
# conf/logging.yml (at its own import): apply the project's logging configuration again.
LOGGING.configure(dict(LOGGING.data))

# kedro-mlflow registers its own hook (one MLflow run per `kedro run`) through its entry point.
HOOKS = (RunListHook(), DataTrackingHook(), ConsoleHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local/parameters_training.yml may change one run's option, not replace `training`
    # An environment (conf/gpu) merges into base key by key: with Kedro's default
    # (destructive) merge, `kedro run --env gpu --params training...` (the hub recipes)
    # replaced the whole `training` block with the few keys a recipe overrides.
    # conf/<env>/mlflow.yml (e.g. conf/team) overrides single keys of conf/base/mlflow.yml too
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}

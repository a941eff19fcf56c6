"""Kedro project settings."""

import os
import sys
import warnings

from kedro.config import OmegaConfigLoader
from kedro.framework.project import LOGGING
from mlflow.pyfunc import PythonModel

# kedro-mlflow defines `KedroPipelineModel`, a PythonModel without type hints, and MLflow warns
# about it at every `kedro` command (past any warning filter); this project never uses it. MLflow's
# own opt-out, set for the definition of that one class only.
PythonModel._skip_type_hint_validation = True  # type: ignore[attr-defined]
try:
    import kedro_mlflow.mlflow  # noqa: F401  (sets kedro-mlflow's logger level before ours)
finally:
    del PythonModel._skip_type_hint_validation  # type: ignore[attr-defined]

# MLflow's artifact download bars are one 1,000-character line per download in a log file.
if not sys.stderr.isatty():
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from visprompt.hooks import DataTrackingHook, RunListHook  # noqa: E402
from visprompt.pipelines.console import ConsoleHook  # noqa: E402
from visprompt.pipelines.orphans import OrphanRunsHook  # noqa: E402
from visprompt.pipelines.runs import CONFIG_LOADER_ARGS  # noqa: E402,F401 (one definition)

# The comparison, profiling and registry nodes read every run's namespaced outputs
# (`<run>.train_summary`): names with a dot outside their own namespace, by design.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")

# MLflow and kedro-mlflow set their loggers' levels when imported, after Kedro applied
# conf/logging.yml (at its own import): apply the project's logging configuration again.
LOGGING.configure(dict(LOGGING.data))

# kedro-mlflow registers its own hook (one MLflow run per `kedro run`) through its entry point.
HOOKS = (RunListHook(), DataTrackingHook(), ConsoleHook(), OrphanRunsHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader

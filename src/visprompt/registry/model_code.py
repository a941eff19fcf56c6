"""Models-from-code definition of a registered prompt (MLflow 3): no pickled Python object."""

from mlflow.models import set_model

from visprompt.registry.pyfunc_model import PromptClassifier

set_model(PromptClassifier())

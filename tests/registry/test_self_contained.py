"""A version is self-contained: a fresh venv built only from the version's own
requirements.txt (no visprompt installed) loads it and predicts what this venv does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from registry_kit import example_images, register_candidate

from visprompt.registry.integrity import smoke_frame

UV = Path(sys.executable).parent / "uv"

#: Run in the fresh venv: visprompt must not be importable before the version is loaded.
CHECK = """
import json, sys
import mlflow, pandas as pd
try:
    import visprompt
    sys.exit(f"visprompt importable before loading: {visprompt.__file__}")
except ImportError:
    pass
model = mlflow.pyfunc.load_model(sys.argv[1])
import visprompt
frame = pd.DataFrame({"image": json.loads(sys.stdin.read())})
print(json.dumps({"visprompt": visprompt.__file__,
                  "labels": model.predict(frame)["label"].tolist()}))
"""


@pytest.mark.skipif(not UV.exists(), reason="uv is installed with the project (make install)")
def test_a_fresh_venv_from_the_versions_requirements_serves_it(
    project: Path, model_name: str, tmp_path: Path
) -> None:
    decision = register_candidate(project, model_name, seed=31, metric=0.5)
    uri = f"models:/{model_name}/{decision.version}"
    requirements = Path(mlflow.artifacts.download_artifacts(f"{uri}/requirements.txt"))
    pins = requirements.read_text().split()
    assert {"torch==2.14.1", f"mlflow=={mlflow.__version__}"} <= set(pins)
    assert all("==" in pin for pin in pins) and not any("visprompt" in p for p in pins)
    venv = tmp_path / "venv"
    # the venv from the version alone; uv installs from its local cache (seconds), as pip
    # would from the on-disk wheels (`pip install -r requirements.txt`, minutes)
    subprocess.run([str(UV), "venv", "-q", "--python", sys._base_executable, str(venv)], check=True)
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--offline", "--python", str(venv / "bin" / "python")]
        + ["-r", str(requirements)],
        check=True,
    )
    images = [str(i) for i in smoke_frame(example_images(6, seed=32))["image"]]
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECK, uri],
        input=json.dumps(images),
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no project, no src/ on the path
        env=env | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert f"{os.sep}code{os.sep}visprompt{os.sep}" in answer["visprompt"]  # the version's copy
    expected = mlflow.pyfunc.load_model(uri).predict(smoke_frame(example_images(6, seed=32)))
    assert answer["labels"] == expected["label"].tolist()

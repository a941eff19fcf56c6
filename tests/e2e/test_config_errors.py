"""Configuration mistakes stop `kedro run` with one paragraph, before any work starts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_config_mistakes_get_one_paragraph_before_mlflow_or_data(project_copy) -> None:
    result = project_copy.run("--pipelines", "trainng", check=False)
    assert result.returncode == 1
    assert "Error: unknown pipeline(s) trainng; valid: __default__," in result.stderr
    assert "training" in result.stderr and "Traceback" not in result.stderr + result.stdout

    typo = "training.runs.vp.options.promt_size=3"
    result = project_copy.run("--pipelines", "training", "--params", typo, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error == [
        "Error: training run 'vp' (parameters_training.yml: training.runs.vp.options): unknown "
        "option 'promt_size' for method vp; valid: design, prompt_size, image_size, output"
    ]
    assert "Traceback" not in result.stderr + result.stdout
    # refused before kedro-mlflow set up its store and before any node wrote data
    assert not (project_copy.path / "mlflow/mlflow.db").exists()
    assert not any(p.is_file() for p in (project_copy.path / "data").rglob("*"))

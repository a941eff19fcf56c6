"""Configuration mistakes stop `kedro run` with one paragraph, before any work starts.

Each mistake is one `kedro run` in a project copy; the error must name the run, the field,
the bad value and the valid choices, with no traceback, before kedro-mlflow sets up its store
or any node writes data. Every check runs before the session starts (`kedro_run.preflight`),
so its cost is Kedro's start-up alone (the pipeline-name typo): ~5 s of CPU on the 2-core
machine, most of it the `import mlflow` of kedro-mlflow's commands, which Kedro loads at every
`kedro` command; torch, timm and Great Expectations are not imported before the error, except
for the mistakes only a built model shows (an AP layer, a token method on a CNN): each run's
method is then built on a meta-device stand-in of its backbone (~5 s more, mostly imports).
"""

from __future__ import annotations

import resource
import subprocess

import pytest
import yaml
from e2e_kit import console_problems

pytestmark = pytest.mark.slow


def _error(result: subprocess.CompletedProcess) -> list[str]:
    """The `Error:` lines; the run exited 1 and printed no traceback and no warning."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert console_problems(output) == [], output
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def test_config_mistakes_get_one_paragraph_before_mlflow_or_data(project_copy) -> None:
    # how fast each is refused is measured by benchmarks/config_errors.py, not asserted here
    result = project_copy.run("--pipelines", "trainng", check=False)
    assert _error(result)[0].startswith("Error: unknown pipeline(s) trainng; valid: __default__,")
    assert "training" in result.stderr

    # a partial override in conf/local merges into base (a destructive merge would drop the
    # run's method and every other training key, and fail differently)
    local = {"training": {"runs": {"vp": {"options": {"prompt_size": 8}}}}}
    (project_copy.path / "conf/local/parameters_training.yml").write_text(yaml.safe_dump(local))
    mistakes = {
        "training.runs.vp.options.promt_size=3": (
            "Error: training run 'vp' (parameters_training.yml: training.runs.vp.options): "
            "unknown option 'promt_size' for method vp; valid: design, prompt_size, "
            "image_size, output"
        ),
        "training.runs.vp.method=vpp": (
            "Error: training run 'vp' (parameters_training.yml: training.runs.vp.method): "
            "unknown method 'vpp'; valid: adavipro, ap, bias_tuning, full_finetune, "
            "linear_probe, lora, norm_tuning, pgn, vp, vpt"
        ),
        "training.runs.vp.train.lr=fast": (
            "Error: training run 'vp' (parameters_training.yml: training.runs.vp.train.lr): "
            "lr is 'fast' (str); expected a number"
        ),
    }
    for params, expected in mistakes.items():
        result = project_copy.run("--pipelines", "training", "--params", params, check=False)
        assert _error(result) == [expected]
    result = project_copy.run("--namespaces", "vpx", check=False)
    assert _error(result)[0].startswith("Error: unknown namespace(s) vpx; valid: ")
    assert "vp" in _error(result)[0].split("valid: ")[1].split(", ")
    # refused before kedro-mlflow set up its store and before any node wrote data
    assert not (project_copy.path / "mlflow/mlflow.db").exists()
    shipped = set(project_copy.path.glob("data/01_raw/weights/*"))  # tracked in git, copied
    written = [p for p in (project_copy.path / "data").rglob("*") if p.is_file()]
    assert set(written) == shipped, written


def _cpu_seconds_of(run, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """A finished `kedro run` and the CPU seconds (user + sys) it took: a bound that holds on
    a loaded CI machine, where wall time does not."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run(*args, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_mistakes_known_only_to_the_data_the_files_or_the_built_model_are_refused_up_front(
    project_copy, tmp_path
) -> None:
    """Unknown keys, YAML syntax, the image folder and the built methods: one paragraph
    naming the file, the key and the fix, before the session (no "No nodes ran")."""
    (tmp_path / "one_class/cats").mkdir(parents=True)
    folder = "data_ingestion.source=imagefolder,data_ingestion.sources.imagefolder.root="
    local = project_copy.path / "conf/local/parameters_training.yml"
    mistakes = {  # (conf/local text or None, --params) -> what the paragraph must say
        (None, "trainig.seeds=[0]"): ["--params: unknown parameter 'trainig'", "'training'"],
        (None, "registry.modl_name=x"): ["'registry.modl_name'", "'registry.model_name'"],
        (None, "training.runz.vp.method=vp"): ["'training.runz'", "'training.runs'"],
        ("trainig: {seeds: [0]}\n", None): [
            "conf/local/parameters_training.yml: unknown parameter 'trainig'", "'training'"
        ],
        ("training:\n  seeds: [0\n  hparams: config\n", None): [
            "conf/local/parameters_training.yml line 3, column 10: YAML syntax error"
        ],
        (None, folder + str(tmp_path / "missing")): [
            "data_ingestion.sources.imagefolder.root", "missing", "set data_ingestion"
        ],
        (None, folder + str(tmp_path / "one_class")): [
            "holds 1 class folder(s) (cats)", "at least 2 (data_validation.min_classes)"
        ],
        (None, "training.runs.ap_vit.options.layer=blocks.99"): [
            "training run 'ap_vit' (parameters_training.yml: training.runs.ap_vit.options)",
            "unknown layer 'blocks.99'", "blocks.0, blocks.1",
        ],
        (None, "training_engine.devices=3"): [
            "(training_engine.devices): devices is 3", "batch_size=64",
        ],
    }  # fmt: skip
    for (text, params), expected in mistakes.items():
        local.unlink(missing_ok=True)
        if text is not None:
            local.write_text(text)
        args = ("--params", params) if params else ()
        result, cpu = _cpu_seconds_of(project_copy.run, *args)
        errors = _error(result)
        assert len(errors) == 1 and all(part in errors[0] for part in expected), errors
        assert "No nodes ran" not in result.stdout + result.stderr
        assert cpu < 30, (params, text, cpu)  # ~5-9 s of CPU on the 2-core VM
    assert not (project_copy.path / "mlflow/mlflow.db").exists()

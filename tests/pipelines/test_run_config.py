"""The run list comes from Kedro's own config loader: soft-merged envs, runtime params."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.context import KedroContext
from kedro.framework.hooks import _create_hook_manager

from visprompt import settings
from visprompt.hooks import RunListHook
from visprompt.pipelines import runs
from visprompt.training.runs import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """The project's conf/base and an empty conf/local, copied to tmp."""
    source = tmp_path / "conf"
    (source / "base").mkdir(parents=True)
    (source / "local").mkdir()
    for name in (
        "parameters_training.yml",
        "parameters_backbone.yml",
        "parameters_prompt_init.yml",
    ):
        (source / "base" / name).write_text((ROOT / "conf/base" / name).read_text())
    return source


def loader(conf: Path, **kwargs) -> OmegaConfigLoader:
    return OmegaConfigLoader(conf_source=str(conf), **settings.CONFIG_LOADER_ARGS, **kwargs)


@pytest.fixture(autouse=True)
def no_session_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "_SESSION_PARAMETERS", None)
    monkeypatch.setattr(runs, "_CREATED_FROM", None)


def test_a_partial_local_override_changes_one_option(conf: Path) -> None:
    override = {"training": {"runs": {"vp": {"options": {"prompt_size": 8}}}}}
    (conf / "local/parameters_training.yml").write_text(yaml.safe_dump(override))
    params = loader(conf)["parameters"]
    specs = runs.configured_runs(params)
    assert specs["vp"].options["prompt_size"] == 8
    assert specs["vp"].options["design"] == "pad"  # the rest of the run is kept
    assert params["training"]["checkpoint_root"]  # and so is every other training key
    base = yaml.safe_load((conf / "base/parameters_training.yml").read_text())
    assert list(specs) == list(base["training"]["runs"])


def test_the_hook_validates_the_sessions_parameters_with_runtime_params(conf: Path) -> None:
    def context(runtime_params: dict) -> KedroContext:
        return KedroContext(
            package_name="visprompt",
            project_path=conf.parent,
            config_loader=loader(conf, runtime_params=runtime_params),
            hook_manager=_create_hook_manager(),
            env=None,
        )

    def vp_options(options: dict) -> dict:
        return {"training": {"runs": {"vp": {"options": options}}}}

    hook = RunListHook()
    hook.after_context_created(context(vp_options({"prompt_size": 6})))
    assert runs.configured_runs()["vp"].options["prompt_size"] == 6  # the session's, not disk's
    with pytest.raises(ConfigError, match="unknown option 'promt_size' for method vp"):
        hook.after_context_created(context(vp_options({"promt_size": 6})))


def test_pipelines_created_before_the_session_are_rebuilt_from_its_parameters(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    runs.configured_runs()  # a pipeline created from the project's files, before any session
    override = {"training": {"runs": {"vp": {"options": {"prompt_size": 6}}}}}
    session = loader(conf, runtime_params=override)["parameters"]
    assert runs.use_parameters(session)  # --params changed the run list: rebuild
    assert runs.configured_runs()["vp"].options["prompt_size"] == 6
    assert not runs.use_parameters(session)  # created from the session's now


def test_a_sweep_recipes_run_list_is_validated_with_the_training_runs(conf: Path) -> None:
    """An option typo in a sweep recipe fails before anything runs, not in its node."""
    (conf / "base/parameters_ap_layer_sweep.yml").write_text(
        (ROOT / "conf/base/parameters_ap_layer_sweep.yml").read_text()
    )
    params = loader(conf)["parameters"]
    lists = runs.run_lists(params)
    assert set(lists) == {"training", "ap_layer_sweep"}
    assert lists["ap_layer_sweep"] == runs.recipe_runs("ap_layer_sweep", params)
    sweep = params["ap_layer_sweep"]["runs"]
    first = next(iter(sweep))
    sweep[first]["options"] = {"layr": "layer1"}
    with pytest.raises(ConfigError, match="unknown option 'layr' for method ap"):
        runs.run_lists(params)
    sweep[first] = {"method": "ap", "backbone": "resnet", "train": {"epochs": "3"}}
    with pytest.raises(ConfigError, match="ap_layer_sweep.runs.apsweep_resnet_layer1.train"):
        runs.run_lists(params)


def test_the_yaml_training_defaults_do_not_drift_from_the_code() -> None:
    """A default is stated once: where the YAML repeats an option, it is TrainConfig's value.

    `cache_prefix` is the embedded default's choice (off in the library: a prefix cache needs
    a cacheable method and `augment: none`).
    """
    import dataclasses

    from visprompt.training import TrainConfig

    stated = yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())
    code = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    drift = {
        key: (value, code[key])
        for key, value in stated["training"]["defaults"].items()
        if key != "cache_prefix" and value != code[key]
    }
    assert not drift, f"parameters_training.yml vs TrainConfig defaults: {drift}"

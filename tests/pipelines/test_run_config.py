"""The run list comes from Kedro's own config loader: soft-merged envs, runtime params."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.context import KedroContext
from kedro.framework.hooks import _create_hook_manager

from visprompt import settings
from visprompt.hooks import RunListHook
from visprompt.pipelines import config_check, runs
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


# -- the preflight's checks of the user's layers, data folder and built methods ----------------


def _mistake(conf: Path, **options) -> str:
    """The one-paragraph error of `check_layers` on conf with `options`."""
    with pytest.raises(ConfigError) as error:
        config_check.check_layers(conf, options.get("env"), options.get("params"))
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_unknown_keys_in_params_or_conf_local_name_the_nearest_valid_one(conf: Path) -> None:
    for name in ("parameters.yml", "parameters_registry.yml"):
        (conf / "base" / name).write_text((ROOT / "conf/base" / name).read_text())
    message = _mistake(conf, params={"trainig": {"seeds": [0]}})
    assert message.startswith("--params: unknown parameter 'trainig' (did you mean 'training'?")
    assert "registry.model_name" in _mistake(conf, params={"registry": {"modl_name": "x"}})
    runz = _mistake(conf, params={"training": {"runz": {"vp": {"method": "vp"}}}})
    assert "'training.runz' (did you mean 'training.runs'?" in runz
    far = _mistake(conf, params={"registry": {"zzz": 1}})
    assert "valid keys under registry: margin, metric, model_name" in far
    (conf / "local/parameters_training.yml").write_text("trainig:\n  seeds: [0]\n")
    message = _mistake(conf)
    assert "local/parameters_training.yml: unknown parameter 'trainig'" in message
    (conf / "local/parameters_training.yml").write_text("training: {seeds: [0]}\n")
    # a --params key that a config file reads through Kedro's runtime_params resolver
    (conf / "local/catalog.yml").write_text("x: {type: a, filepath: '${runtime_params:day}'}\n")
    config_check.check_layers(conf, None, {"day": "2026-12-07"})
    # the user's own names (a new run, a training option) are checked by their own code
    config_check.check_layers(
        conf, None, {"training": {"runs": {"mine": {"method": "vp"}}, "defaults": {"x": 1}}}
    )


def test_every_recipe_passes_the_key_check() -> None:
    for recipe in sorted((ROOT / "pipelines").glob("*.yml")):
        params = (yaml.safe_load(recipe.read_text()).get("run") or {}).get("params") or {}
        config_check.check_layers(ROOT / "conf", "base", params)


def test_a_yaml_syntax_error_names_the_file_and_line(conf: Path) -> None:
    (conf / "local/parameters_training.yml").write_text("training:\n  seeds: [0\n  hparams: x\n")
    message = _mistake(conf)
    assert "local/parameters_training.yml line 3, column 10: YAML syntax error" in message
    assert "that starts at line 2" in message
    (conf / "local/parameters_training.yml").write_text("training: {}\ntraining: {}\n")
    assert "found duplicate key" in _mistake(conf)
    (conf / "local/parameters_training.yml").unlink()
    (conf / "local/catalog.yml").write_text("x:\n  type: a\n   filepath: b\n")  # not params
    assert "local/catalog.yml line 3, column 12: YAML syntax error" in _mistake(conf)


def test_kedros_own_refusal_becomes_one_paragraph(conf: Path) -> None:
    (conf / "local/parameters_a.yml").write_text("seed: 1\n")
    (conf / "local/parameters_b.yml").write_text("seed: 2\n")
    with pytest.raises(ConfigError, match="Duplicate keys found in .*: seed. Fix the file"):
        runs.command_parameters(conf_source=str(conf))


def test_an_image_folder_is_checked_from_its_folder_names(tmp_path: Path) -> None:
    from visprompt.data.sources import imagefolder

    with pytest.raises(FileNotFoundError, match=r"imagefolder root '.*nope' .* is missing: set "):
        imagefolder.check_classes(str(tmp_path / "nope"))
    (tmp_path / "cats").mkdir()
    with pytest.raises(ValueError, match=r"holds 1 class folder\(s\) \(cats\).*folder above it"):
        imagefolder.check_classes(str(tmp_path))
    (tmp_path / "dogs").mkdir()
    imagefolder.check_classes(str(tmp_path))
    for split in ("train", "test"):  # the split layout: classes under the split folders
        (tmp_path / "split" / split / "cats").mkdir(parents=True)
    assert imagefolder.class_names(str(tmp_path / "split")) == ["cats"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder")
def test_an_unreadable_image_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    from visprompt.data.sources import imagefolder

    (tmp_path / "images").mkdir(mode=0o000)
    with pytest.raises(PermissionError, match="cannot be listed .*chmod u\\+rx"):
        imagefolder.check_classes(str(tmp_path / "images"))


def test_methods_are_built_on_stand_ins_before_any_work(conf: Path) -> None:
    """A wrong AP layer or a token method on a CNN is refused naming the run and, for AP,
    the backbone's valid layers; the embedded default builds in seconds."""
    from visprompt.training.build_check import check_builds

    def refusal(override: dict) -> str:
        params = loader(conf, runtime_params={"training": {"runs": override}})["parameters"]
        with pytest.raises(ConfigError) as error:
            check_builds(runs.configured_runs(params), params["backbone"])
        return str(error.value)

    message = refusal({"ap_vit": {"options": {"layer": "blocks.99"}}})
    assert message.startswith("training run 'ap_vit' (parameters_training.yml: training.runs.")
    assert "unknown layer 'blocks.99'" in message and "blocks.0, blocks.1" in message
    assert "needs a VIT backbone" in refusal({"vpt_shallow": {"backbone": "cnn"}})
    params = loader(conf)["parameters"]
    start = time.process_time()
    check_builds(runs.configured_runs(params), params["backbone"])  # the embedded default
    assert time.process_time() - start < 20  # ~1-3 s of CPU on the 2-core VM


def test_devices_that_do_not_divide_the_batch_are_refused_with_the_run(conf: Path) -> None:
    params = loader(conf, runtime_params={"training_engine": {"devices": 3}})["parameters"]
    with pytest.raises(ConfigError, match=r"training run '\w+' \(training_engine.devices\): "):
        runs.configured_runs(params)
    params = loader(conf, runtime_params={"training_engine": {"devices": 4}})["parameters"]
    runs.configured_runs(params)  # 64 over 4 processes


def test_the_preflight_checks_the_data_only_where_ingestion_runs(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visprompt.pipelines.kedro_run import preflight

    monkeypatch.chdir(ROOT)
    for name in ("parameters.yml", "parameters_data_ingestion.yml"):
        (conf / "base" / name).write_text((ROOT / "conf/base" / name).read_text())
    folder = {"source": "imagefolder", "sources": {"imagefolder": {"root": str(conf / "x")}}}
    options = {"conf_source": str(conf), "params": {"data_ingestion": folder}}
    preflight(options | {"pipelines": ["evaluation"]})  # no ingestion, no training: no check
    with pytest.raises(ConfigError, match=r"imagefolder root '.*/x' .* is missing"):
        preflight(options | {"pipelines": ["data_ingestion"]})

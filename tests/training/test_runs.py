"""The run list is checked as a whole before anything starts; each mistake names its field."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from visprompt.methods import config_class
from visprompt.training import TrainConfig
from visprompt.training.config import OptionError
from visprompt.training.runs import ConfigError, check_options, train_config, validate_runs

PARAMS: dict[str, Any] = {
    "backbone": {"build": {"vit": {}, "resnet": {}}},
    "prompt_init": {"inits": {"spt_kmeans": {}}},
    "training": {
        "defaults": {"epochs": 2, "lr": 0.01},
        "runs": {
            "lp": {"method": "linear_probe", "backbone": "vit"},
            "vp": {"method": "vp", "backbone": "vit", "options": {"prompt_size": 4}},
            "ap": {"method": "ap", "backbone": "resnet", "options": {"granularity": "full"}},
            "spt": {
                "method": "vpt",
                "backbone": "vit",
                "options": {"variant": "deep", "init": "spt"},
                "prompt_init": "spt_kmeans",
            },
        },
    },
    "training_engine": {"accelerator": "cpu", "devices": 1},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """PARAMS with the dotted `path` set to `value` (a missing last key is added)."""
    params = copy.deepcopy(PARAMS)
    *parents, last = path.split(".")
    target = params
    for key in parents:
        target = target[key]
    target[last] = value
    return params


def error_of(params: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        validate_runs(params)
    return str(info.value)


def test_a_valid_run_list_comes_back_in_order() -> None:
    runs = validate_runs(PARAMS)
    assert list(runs) == ["lp", "vp", "ap", "spt"]
    assert runs["vp"].options == {"prompt_size": 4} and runs["spt"].prompt_init == "spt_kmeans"


def test_option_typo_lists_the_methods_options() -> None:
    message = error_of(with_change("training.runs.vp.options", {"promt_size": 4}))
    assert message == (
        "training run 'vp' (parameters_training.yml: training.runs.vp.options): unknown option "
        "'promt_size' for method vp; valid: design, prompt_size, image_size, output"
    )


def test_options_of_a_method_that_takes_none_and_tensors_are_not_options() -> None:
    assert config_class("linear_probe").model_fields == {}
    assert "init_prompts" not in config_class("vpt").model_fields
    assert list(config_class("vpt").model_fields) == [
        "variant", "num_prompts", "init", "dropout", "pool_prompts"
    ]  # fmt: skip
    message = error_of(with_change("training.runs.lp.options", {"rank": 4}))
    assert "unknown option 'rank' for method linear_probe; valid: none" in message


def test_option_values_are_checked_against_the_methods_config() -> None:
    message = error_of(with_change("training.runs.ap.options.granularity", "channels"))
    assert message == (
        "training run 'ap' (parameters_training.yml: training.runs.ap.options): ap option "
        "'granularity' is 'channels' (str); should be 'full' or 'channel'"
    )
    message = error_of(with_change("training.runs.vp.options.prompt_size", "4"))
    assert "options): vp option 'prompt_size' is '4' (str); should be a valid integer" in message
    message = error_of(with_change("training.runs.vp.options.prompt_size", 0))
    assert "'prompt_size' is 0 (int); should be greater than or equal to 1" in message
    message = error_of(with_change("training.runs.spt.options.dropout", True))
    assert "vpt option 'dropout' is True (bool); should be a valid number" in message


def test_unknown_method_is_an_error_not_a_skipped_run() -> None:
    message = error_of(with_change("training.runs.vp.method", "vpp"))
    assert "training run 'vp'" in message and "training.runs.vp.method" in message
    assert "unknown method 'vpp'; valid: adavipro, ap," in message


@pytest.mark.parametrize(
    ("path", "value", "where", "words"),
    [
        ("training.defaults.lr", "0.01", "defaults.lr", "lr is '0.01' (str); expected a number"),
        ("training.runs.vp.train", {"epochs": "3"}, "training.runs.vp.train.epochs", "an integer"),
        ("training_engine.devices", 1.5, "training_engine.devices", "an integer or a string"),
    ],
)  # fmt: skip
def test_training_settings_are_type_checked(path: str, value: Any, where: str, words: str) -> None:
    message = error_of(with_change(path, value))
    assert where in message and words in message
    assert message.startswith("training run '")


def test_training_values_out_of_range_and_unknown_keys_name_the_run() -> None:
    assert (
        "training run 'vp' (parameters_training.yml: training.runs.vp.train.epochs): "
        "epochs is 0 (int); expected greater than 0"
        in error_of(with_change("training.runs.vp.train", {"epochs": 0}))
    )
    message = error_of(with_change("training.runs.vp.train", {"learning_rate": 0.1}))
    assert (
        "training.runs.vp.train.learning_rate): unknown training option 'learning_rate'; valid: "
        "accelerator, augment, batch_size," in message
    )


def test_missing_parameters_files_are_named() -> None:
    assert "conf/base/parameters_training.yml missing or empty" in error_of(
        {k: v for k, v in PARAMS.items() if k != "training"}
    )
    assert "parameters_backbone.yml missing or empty" in error_of(with_change("backbone", {}))


def test_unknown_backbone_and_prompt_init_list_the_valid_ones() -> None:
    message = error_of(with_change("training.runs.vp.backbone", "vitt"))
    assert "unknown backbone 'vitt'; valid: vit, resnet" in message
    message = error_of(with_change("training.runs.spt.prompt_init", "spt_kmean"))
    assert "unknown prompt init 'spt_kmean'; valid: spt_kmeans" in message


def test_train_config_layers_defaults_engine_and_run() -> None:
    config = train_config({"lr": 0.1, "epochs": 3}, {"lr": 0.5}, {"precision": "bf16-mixed"})
    assert (config.lr, config.epochs, config.precision) == (0.5, 3, "bf16-mixed")


def test_train_config_errors_name_the_field_and_what_is_valid() -> None:
    def error(**values: Any) -> str:
        with pytest.raises(OptionError) as info:
            TrainConfig.from_dict(values)
        return str(info.value)

    assert error(lr="0.01") == "lr is '0.01' (str); expected a number"
    assert error(patience=2.5) == "patience is 2.5 (float); expected an integer or null"
    assert error(progress=1) == "progress is 1 (int); expected true or false"
    assert error(optimizer="rmsprop") == (
        "optimizer is 'rmsprop' (str); expected 'sgd', 'adam' or 'adamw'"
    )
    # consistency checks: the bound is the value given, or the default
    assert error(epochs=2, warmup_epochs=3) == "warmup_epochs is 3 (int); expected at most epochs=2"
    assert error(lr=1e-6) == "min_lr is 1e-05 (float); expected at most lr=1e-06"
    assert TrainConfig(lr=1, devices="auto").lr == 1  # an int is a number
    with pytest.raises(ValueError, match="epochs"):  # constructing it checks the same
        TrainConfig(epochs=0)


def test_train_config_is_a_dataclass_that_revalidates_on_replace() -> None:
    config = TrainConfig(no_weight_decay=["prompt"])  # YAML's list, kept as a tuple
    assert config.no_weight_decay == config.to_dict()["no_weight_decay"] == ("prompt",)
    assert dataclasses.replace(config, epochs=3).epochs == 3
    with pytest.raises(ValueError, match="warmup_epochs"):
        dataclasses.replace(config, epochs=2, warmup_epochs=3)


def test_image_size_is_stated_once_by_the_backbone() -> None:
    params = with_change(
        "backbone",
        {
            "build": {"vit": "v", "resnet": "r"},
            "models": {"v": {"model_kwargs": {"img_size": 32}}, "r": {"image_size": 64}},
        },
    )
    assert validate_runs(params)  # no run states a size: each derives its backbone's
    params["training"]["runs"]["ap"]["options"]["image_size"] = 64  # agrees: allowed
    validate_runs(params)
    params["training"]["runs"]["vp"]["options"]["image_size"] = 64
    assert error_of(params) == (
        "training run 'vp' (parameters_training.yml: training.runs.vp.options.image_size) is "
        "64, but backbone 'vit' is stated at 32 px in parameters_backbone.yml: drop the option "
        "(methods take the size from the backbone) or change the backbone's image_size"
    )


def test_option_errors_name_the_file_they_were_set_in() -> None:
    spec = validate_runs(PARAMS)["vp"]
    bad = dataclasses.replace(spec, options={"design": "ring"})
    where = "sweep run 'vp' (pipelines/sweep.yml: sweep.runs.vp.options)"
    with pytest.raises(ConfigError) as error:
        check_options(bad, where)
    assert str(error.value) == (
        f"{where}: vp option 'design' is 'ring' (str); should be 'pad', 'fixed_patch' or "
        "'random_patch'"
    )


def test_a_backbone_built_at_another_size_is_refused_and_the_size_keys_the_run() -> None:
    """`backbone.models.<m>.image_size=128` with a `backbone_specs` still built at 64 px (a
    `--namespaces` run skips the backbone node) must not train, or reuse, the 64 px result."""
    from visprompt.training.service import image_size, run_params

    params = with_change(
        "backbone", {"build": {"vit": "v", "resnet": "r"}, "models": {"r": {"image_size": 128}}}
    )
    spec = validate_runs(params)["ap"]
    assert spec.image_size == 128 and validate_runs(PARAMS)["ap"].image_size is None
    built = {"sha256": "s", "data_config": {"input_size": [3, 64, 64], "mean": [0.5] * 3}}
    with pytest.raises(ConfigError, match=r"states 128 px .* built at 64 px.*--pipelines backbone"):
        image_size(spec, built)
    rebuilt = {"sha256": "s", "data_config": {"input_size": [3, 128, 128], "mean": [0.5] * 3}}
    assert image_size(spec, rebuilt) == 128
    config = train_config({}, {}, {}, run="ap")
    keys = {
        json.dumps(run_params(spec, config, b, "d", {}), sort_keys=True) for b in (built, rebuilt)
    }
    assert len(keys) == 2  # same weights, another input size: another run identity

"""Method configs: torch-free, strict, the model's own options; capabilities per method."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from methods.test_prompt_inversion import invertible_vit
from tiny import IMAGE_SIZE, make_backbone

from visprompt import methods
from visprompt.evaluation.plots import family
from visprompt.methods.base import Classifier
from visprompt.methods.pgn.inversion import RGBDeployment

C = 3
#: The one option a method cannot default (AP's layer depends on the backbone).
REQUIRED = {"ap": {"layer": "blocks.1"}}


def test_configs_and_run_validation_import_no_torch() -> None:
    code = (
        "import sys; from visprompt import methods; "
        "from visprompt.training.runs import validate_runs; "
        + "; ".join(f"import visprompt.methods.{name}.config" for name in methods.available())
        + "; from visprompt.methods.vp import config; "
        "print(sorted(m for m in ('torch', 'timm', 'peft', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_methods_package_gives_its_model_names_on_use() -> None:
    from visprompt.methods.vp import PadPrompt, VisualPrompt

    assert VisualPrompt is methods.method_class("vp") and PadPrompt.__module__.endswith("model")
    with pytest.raises(ImportError, match="NoSuchThing"):
        from visprompt.methods.vp import NoSuchThing  # noqa: F401


@pytest.mark.parametrize("name", methods.available())
def test_every_method_builds_from_its_config_defaults(name: str) -> None:
    config = methods.config_class(name)
    model_class = methods.method_class(name)
    assert model_class.name == name and model_class.config_class is config
    model = methods.build(name, make_backbone("vit"), C, **REQUIRED.get(name, {}))
    dumped = model.config()["options"]
    assert list(dumped) == list(config.model_fields)
    assert None not in dumped.values() or name == "lora"  # backbone-derived defaults resolved
    assert methods.parse_options(config, json.loads(json.dumps(dumped))) == model.method_config


def test_ap_without_a_layer_says_which_layers_exist() -> None:
    with pytest.raises(ValueError, match=r"ap needs `layer`.*blocks\.1"):
        methods.build("ap", make_backbone("vit"), C)


@pytest.mark.parametrize(
    ("name", "options", "words"),
    [
        ("vp", {"promt_size": 4}, "unknown option 'promt_size' for method vp; valid: design, "),
        ("linear_probe", {"rank": 4}, "valid: none (this method takes no options)"),
        ("vp", {"prompt_size": "4"}, "vp option 'prompt_size' is '4' (str); should be a valid"),
        ("vpt", {"pool_prompts": 1}, "'pool_prompts' is 1 (int); should be a valid boolean"),
        ("lora", {"rank": 2.0}, "'rank' is 2.0 (float); should be a valid integer"),
        ("lora", {"targets": 3}, "should be a valid list or a valid string"),
        ("adavipro", {"tau_decay": 1.5}, "'tau_decay' is 1.5 (float); should be less than or"),
        ("pgn", {"placement": "above"}, "should be 'below' or 'replace'"),
    ],
)
def test_bad_options_are_refused_in_one_sentence(name: str, options: dict, words: str) -> None:
    with pytest.raises(methods.OptionError) as error:
        methods.parse_options(methods.config_class(name), options)
    assert words in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(
        ValueError, match=words.split(";")[0].replace("(", r"\(").replace(")", r"\)")
    ):
        methods.build(name, make_backbone("vit"), C, **options)


def test_config_json_is_the_configs_dump_and_old_artifacts_load(tmp_path: Path) -> None:
    model = methods.build("vpt", make_backbone("vit"), C, num_prompts=2, dropout=0.1)
    folder = methods.save(model, tmp_path / "vpt")
    saved = json.loads((folder / "config.json").read_text())
    assert saved["options"] == model.method_config.model_dump()
    saved["options"]["dropout"] = 0  # an int where a float is declared: as older saves wrote it
    (folder / "config.json").write_text(json.dumps(saved))
    assert methods.load(folder, make_backbone("vit")).method_config.dropout == 0.0


def test_plot_family_is_the_methods_own() -> None:
    assert {name: family(name) for name in methods.available()} == {
        "adavipro": "input-space prompts",
        "ap": "activation prompts",
        "bias_tuning": "baselines",
        "full_finetune": "baselines",
        "linear_probe": "baselines",
        "lora": "baselines",
        "norm_tuning": "baselines",
        "pgn": "input-space prompts",
        "vp": "input-space prompts",
        "vpt": "token prompts",
    }
    assert family("spt") == family("my_method") == "other"  # runs are named by method, not init


def test_served_form_and_extra_metrics_per_method(caplog: pytest.LogCaptureFixture) -> None:
    def build(name: str, backbone: torch.nn.Module | None = None, **options: object):
        return methods.build(name, backbone or make_backbone("vit"), C, **options)

    lora = build("lora", rank=2)
    assert isinstance(lora.served(), Classifier) and isinstance(lora.served(rgb=True), Classifier)
    folded = build("ap", layer="blocks.1.norm1", granularity="channel")
    assert isinstance(folded.served(), Classifier)
    for model in (build("ap", layer="blocks.1"), build("vp"), build("vpt"), build("linear_probe")):
        assert model.served(rgb=True) is model and not model.training
    pgn = build("pgn", invertible_vit(), num_prompts=2, library_size=4, width=1)
    assert pgn.served() is pgn and isinstance(pgn.served(rgb=True), RGBDeployment)
    images = torch.randint(0, 255, (4, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    dataset = list(zip(images, torch.arange(4) % C, strict=True))
    config = {"input_size": (3, IMAGE_SIZE, IMAGE_SIZE), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    assert build("vp").extra_test_metrics(dataset, config, 2, progress=False) == {}
    figures = pgn.extra_test_metrics(dataset, config, 2, progress=False)
    assert set(figures) >= {"rgb_agreement", "rgb_agreement_uint8", "rgb_top1"}
    not_invertible = build("pgn", num_prompts=2, library_size=4, width=1)  # 3·P² < D
    assert not_invertible.extra_test_metrics(dataset, config, 2, progress=False) == {}
    assert "no RGB deployment figures" in caplog.text


def test_no_code_outside_methods_asks_which_method_a_model_is() -> None:
    """What a method needs elsewhere is read through `AdaptedModel`/`MethodConfig`: no module
    outside `methods/` names a method's model class (no isinstance on PGN, AdaViPro, ...)."""
    package = Path(methods.__file__).parents[1]
    classes = {methods.method_class(name).__name__ for name in methods.available()}
    named = set()
    for file in package.rglob("*.py"):
        if package / "methods" in file.parents:
            continue
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            name = getattr(node, "id", None) or getattr(node, "attr", None)
            if name in classes:
                named.add(f"{file.relative_to(package)}: {name}")
    assert not named

"""`visprompt pgn-invert`: prompted PNGs from a saved PGN artifact, backbone weights, images."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from visprompt import methods
from visprompt.backbones import create_backbone, save_weights
from visprompt.cli import main
from visprompt.methods.pgn.inversion import PromptServer

KWARGS = {
    "img_size": 32,
    "patch_size": 8,
    "embed_dim": 64,
    "depth": 2,
    "num_heads": 2,
    "num_classes": 10,
}
NAME = "vit_tiny_patch16_224"


@pytest.fixture
def saved(tmp_path: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    backbone = timm.create_model(NAME, pretrained=False, **KWARGS).eval()
    weights = tmp_path / "vit.safetensors"
    save_weights(backbone, weights)
    model = methods.build("pgn", backbone, 3, num_prompts=4, library_size=8, width=4)
    methods.save(model.eval(), tmp_path / "pgn")
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate((32, 48, 40)):  # other sizes are resized to the model's 32 px
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            inputs / f"img{i}.png"
        )
    return {
        "weights": weights,
        "artifact": tmp_path / "pgn",
        "inputs": inputs,
        "out": tmp_path / "out",
    }


def args(saved: dict[str, Path]) -> list[str]:
    return [
        "pgn-invert",
        str(saved["inputs"]),
        "--artifact",
        str(saved["artifact"]),
        "--backbone",
        NAME,
        "--backbone-kwargs",
        json.dumps(KWARGS),
        "--weights",
        str(saved["weights"]),
        "--out",
        str(saved["out"]),
    ]


def test_pgn_invert_writes_prompted_pngs(saved: dict[str, Path]) -> None:
    assert main(args(saved)) == 0
    written = sorted(saved["out"].glob("*.png"))
    assert [p.name for p in written] == ["img0.png", "img1.png", "img2.png"]
    original = np.asarray(Image.open(saved["inputs"] / "img0.png"))
    prompted = np.asarray(Image.open(saved["out"] / "img0.png"))
    assert prompted.shape == (40, 32, 3) and prompted.dtype == np.uint8  # + one patch row
    assert np.array_equal(prompted[:32], original)  # the whole image, then the prompt row
    # the server (unmodified backbone + head) reads the PNGs as they are
    backbone = create_backbone(NAME, weights=saved["weights"], **KWARGS)
    server = PromptServer.from_pgn(methods.load(saved["artifact"], backbone))
    batch = torch.stack(
        [torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in written]
    )
    assert server(batch).shape == (3, 3)


def test_pgn_invert_reads_a_backbone_spec(saved: dict[str, Path]) -> None:
    spec = {
        "name": NAME,
        "model_kwargs": KWARGS,
        "weights_path": str(saved["weights"]),
        "data_config": {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    specs = saved["weights"].with_name("specs.json")
    specs.write_text(json.dumps({"vit_p8": spec}))
    common = [
        str(saved["inputs"] / "img1.png"),
        "--artifact",
        str(saved["artifact"]),
        "--spec",
        str(specs),
        "--out",
        str(saved["out"]),
    ]
    assert main(["pgn-invert", *common, "--key", "vit_p8"]) == 0
    assert [p.name for p in saved["out"].glob("*.png")] == ["img1.png"]
    assert main(["pgn-invert", *common, "--key", "nope"]) == 2


def test_pgn_invert_reports_bad_input(saved: dict[str, Path], capsys) -> None:
    bad = args(saved)
    bad[bad.index("--artifact") + 1] = str(saved["inputs"])  # not an artifact
    assert main(bad) == 2
    assert "not a visprompt artifact" in capsys.readouterr().err
    assert not saved["out"].exists()


def test_console_entry_point_lists_the_subcommand(capsys) -> None:
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("visprompt") == "visprompt.cli:main"
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0 and "pgn-invert" in capsys.readouterr().out

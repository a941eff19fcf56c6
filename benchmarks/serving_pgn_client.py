"""PGN's client-server mode on Fashion-MNIST: the client prompts, a plain backbone classifies.

Trains a PGN briefly on the project's `vit_tiny32` backbone (its pretrained weights file) with
a Fashion-MNIST subset, registers it in a temporary SQLite store, serves it with the
multi-prompt server, and classifies the test subset three ways: the token path (the PGN in
this process), the client + plain server (`pgn_invert.remote_logits`: generator + inversion
here, 8-bit PNG over HTTP to `/backbones/<key>/features`, the PGN's head here), and the
server's own version route (`/invocations/<name>/1`, prompt inversion inside the server).
Writes the agreement table and a figure of what the client sends.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/serving_pgn_client.py \
        --out benchmarks/results/serving_pgn_client.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import matplotlib
import mlflow
import numpy as np
import torch
from PIL import Image

from visprompt import methods
from visprompt.backbones import create_backbone, data_config, sha256_file
from visprompt.data.convert import fit
from visprompt.data.sources.idx import CLASS_NAMES, FILES, read_idx
from visprompt.data.transforms import to_model_input
from visprompt.methods.pgn.inversion import PromptClient, inversion_agreement, to_uint8
from visprompt.pgn_invert import remote_logits
from visprompt.registry.integrity import encode_png
from visprompt.registry.packaging import build_package
from visprompt.registry.promotion import SmokeSet, log_prompt_model

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend

NAME = "pgn-fmnist"
VIT = dict(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, num_classes=16)
CHUNK = 50  # images per request (under the default max_images 64)


def fashion(root: Path, split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` images of a split as uint8 NCHW RGB at 32 px (ingestion's `fit`)."""
    images_file, labels_file = (root / f"{name}.gz" for name in FILES[split])
    images, labels = read_idx(images_file)[:count], read_idx(labels_file)[:count]
    rgb = [fit(Image.fromarray(image).convert("RGB"), 32) for image in images]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2), torch.from_numpy(labels.copy())


def train(model: methods.AdaptedModel, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument(
        "--weights", type=Path, default=Path("data/01_raw/weights/vit_tiny32.safetensors")
    )
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/serving_pgn_client.md")
    )
    args = parser.parse_args()
    started = time.perf_counter()
    backbone = create_backbone("vit_tiny_patch16_224", weights=args.weights, **VIT).eval()
    cfg = data_config(backbone)
    norm = {"mean": cfg["mean"], "std": cfg["std"]}
    train_x, train_y = fashion(args.data, "train", args.train_images)
    test_u8, test_y = fashion(args.data, "test", args.test_images)
    torch.manual_seed(0)
    model = methods.build("pgn", backbone, num_classes=10)
    train(model, to_model_input(train_x, 32, cfg["mean"], cfg["std"]), train_y, args.epochs)
    spec = {
        "name": "vit_tiny_patch16_224",
        "model_kwargs": VIT,
        "weights_path": str(args.weights.resolve()),
        "sha256": sha256_file(args.weights),
        "source": "pretrain",
        "data_config": cfg,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("pgn", artifact_location=str(root / "art"))
        )
        artifact = methods.save(model, root / "pgn")
        package = build_package(spec, CLASS_NAMES["fashion_mnist"], 32, None, "rgb")
        smoke = SmokeSet(test_u8[:8].permute(0, 2, 3, 1).numpy(), test_y[:8].numpy(), 0.0, 1.0)
        with mlflow.start_run():
            info = log_prompt_model(artifact, package, smoke, root)
        mlflow.register_model(info.model_uri, NAME)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "visprompt.serving", "--model", f"{NAME}/1"]
            + ["--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"{base}/ping", timeout=5).read()
                    break
                except OSError:
                    time.sleep(1)
            with urllib.request.urlopen(f"{base}/versions") as response:
                (key,) = json.loads(response.read())["backbones"]
            rgb = test_u8.float() / 255.0
            client = PromptClient.from_pgn(model, norm)
            remote, routed = [], []
            for i in range(0, len(rgb), CHUNK):
                url = f"{base}/backbones/{key}/features"
                remote.append(remote_logits(client, model.head, rgb[i : i + CHUNK], url))
                rows = [[encode_png(im.permute(1, 2, 0).numpy())] for im in test_u8[i : i + CHUNK]]
                table = {"dataframe_split": {"columns": ["image"], "data": rows}}
                routed += [
                    r["label"] for r in post(f"{base}/invocations/{NAME}/1", table)["predictions"]
                ]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    remote_labels = torch.cat(remote).argmax(-1)
    with torch.no_grad():
        token = model(to_model_input(test_u8, 32, cfg["mean"], cfg["std"])).argmax(-1)
        prompted = to_uint8(client(rgb[:6]))
    local = inversion_agreement(model, rgb, test_y, 50, norm)
    figures = {
        "token path top-1 (PGN in one process)": float((token == test_y).float().mean()),
        "client + plain server top-1 (8-bit PNG over HTTP)": float(
            (remote_labels == test_y).float().mean()
        ),
        "agreement: client + plain server vs token path": float(
            (remote_labels == token).float().mean()
        ),
        "server's version route top-1 (inversion in the server)": float(
            (torch.tensor(routed) == test_y).float().mean()
        ),
        "agreement: version route vs token path": float(
            (torch.tensor(routed) == token).float().mean()
        ),
        "in-process rgb_agreement_uint8 (the comparison table's figure)": local["agreement_uint8"],
    }
    names = CLASS_NAMES["fashion_mnist"]
    figure_path = args.out.with_suffix(".png")
    fig, axes = plt.subplots(2, 6, figsize=(12, 5.2), gridspec_kw={"height_ratios": [1, 2]})
    for j in range(6):
        axes[0, j].imshow(test_u8[j].permute(1, 2, 0).numpy())
        axes[0, j].set_title(f"true: {names[int(test_y[j])]}", fontsize=8)
        axes[1, j].imshow(prompted[j].permute(1, 2, 0).numpy())
        axes[1, j].set_title(
            f"token: {names[int(token[j])]}\nclient+server: {names[int(remote_labels[j])]}",
            fontsize=8,
        )
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("client input", fontsize=9)
    axes[1, 0].set_ylabel("sent to the plain backbone\n(PGN's 16 prompt patches below)", fontsize=9)
    fig.suptitle(
        f"PGN client + unmodified vit_tiny32 server: agreement with the token path "
        f"{figures['agreement: client + plain server vs token path']:.1%} "
        f"on {len(test_y)} Fashion-MNIST test images"
    )
    fig.tight_layout()
    fig.savefig(figure_path, dpi=90)
    machine = f"{platform.node()[:12]}, {os.cpu_count()} CPUs, OMP_NUM_THREADS=" + os.environ.get(
        "OMP_NUM_THREADS", "unset"
    )
    text = (
        "# PGN client-server mode: client prompts, plain backbone classifies\n\n"
        f"`python benchmarks/serving_pgn_client.py {' '.join(sys.argv[1:])}` on {machine}; "
        f"PGN (num_prompts 16, below) trained {args.epochs} epochs on the first "
        f"{args.train_images} Fashion-MNIST training images (seed 0, Adam 1e-3, batch 64) on "
        f"vit_tiny32 ({args.weights.name}); the first {args.test_images} test images; "
        f"{time.perf_counter() - started:.0f} s.\n\n| figure | value |\n|---|---|\n"
        + "\n".join(f"| {k} | {v:.1%} |" for k, v in figures.items())
        + f"\n\n![what the client sends]({figure_path.name})\n"
    )
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

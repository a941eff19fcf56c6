"""`visprompt pgn-invert`: PGN-prompted PNG images an unmodified backbone classifies.

The client side of PGN's input-space deployment: it rebuilds a saved PGN artifact around its
backbone and writes, for each input image, the prompted PNG (see `methods.pgn.inversion`).
With `--server URL` (a plain backbone's route of the multi-prompt server,
`http://127.0.0.1:PORT/backbones/<key>/features`), it also sends the prompted PNGs there and
applies the PGN's head to the features the unmodified backbone returns (`remote_logits`).
Kept apart from `visprompt.cli`, which Kedro imports at every `kedro` command: torch and the
methods load only when images are inverted. Not in `methods/pgn/`: everything there is code a
training result depends on (the run's code digest), and this is file and image handling.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from visprompt import backbones, methods
from visprompt.atomic import atomic_path
from visprompt.data.transforms import to_model_input
from visprompt.methods.pgn.inversion import PromptClient, to_uint8
from visprompt.progress import progress_bar
from visprompt.registry.integrity import encode_png

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_paths(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, directories expanded to their image files (sorted); missing is an error."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"input image not found: {item}")
    stems = [p.stem for p in paths]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f"several inputs would write the same output name: {clashes}")
    if not paths:
        raise ValueError(f"no image files in {[str(i) for i in inputs]}")
    return paths


def load_pgn(artifact: Path, backbone: torch.nn.Module) -> methods.AdaptedModel:
    """A saved PGN artifact around `backbone`; another method's artifact is refused."""
    model = methods.load(artifact, backbone)
    if model.name != "pgn":
        raise ValueError(f"{artifact} holds a '{model.name}' artifact; pgn-invert needs 'pgn'")
    return model.eval()


@torch.no_grad()
def write_prompted_images(client: PromptClient, paths: Sequence[Path], out: Path) -> list[Path]:
    """Resize each image to the model's input size, prompt it, write `<out>/<stem>.png`."""
    size = client.inverter.patch_size * client.grid_width
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in progress_bar(paths, desc="pgn-invert", unit="img"):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        batch = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0)
        images = to_model_input(batch, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        prompted = to_uint8(client(images))[0].permute(1, 2, 0).numpy()
        target = out / f"{path.stem}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(prompted).save(tmp, format="PNG")
        written.append(target)
    return written


def remote_features(url: str, images: torch.Tensor, timeout: float = 120) -> torch.Tensor:
    """Pooled features of uint8 NCHW images from a plain backbone's endpoint, sent as PNG."""
    rows = [[encode_png(image.permute(1, 2, 0).numpy())] for image in images]
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()
    request = urllib.request.Request(url, body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return torch.tensor(json.loads(response.read())["features"])
    except urllib.error.HTTPError as err:
        raise ValueError(f"{url} answered HTTP {err.code}: {err.read().decode()[:500]}") from err


@torch.no_grad()
def remote_logits(
    client: PromptClient, head: torch.nn.Module, images: torch.Tensor, url: str
) -> torch.Tensor:
    """PGN's client-server mode: [0, 1] RGB images at the model's input size, prompted here
    (generator + inversion, 8-bit as a PNG carries them), classified by the unmodified
    backbone at `url` (its pooled features) and the PGN's own head here."""
    return head(remote_features(url, to_uint8(client(images))))


def _backbone(args: argparse.Namespace) -> tuple[torch.nn.Module, dict | None]:
    """(backbone, normalisation): from --spec (with its data_config) or --backbone/--weights."""
    if args.spec is None:
        if args.weights is None:
            raise ValueError("--backbone needs --weights (a local file: nothing is downloaded)")
        kwargs = args.backbone_kwargs
        return backbones.create_backbone(args.backbone, weights=args.weights, **kwargs), None
    specs = json.loads(args.spec.read_text())
    if args.key not in specs:
        raise ValueError(f"--key '{args.key}' is not in {args.spec}; keys: {sorted(specs)}")
    return backbones.from_spec(specs[args.key]), specs[args.key].get("data_config")


def pgn_invert(args: argparse.Namespace) -> int:
    """The `pgn-invert` command: write the prompted images, say how many."""
    backbone, normalisation = _backbone(args)
    model = load_pgn(args.artifact, backbone)
    client = PromptClient.from_pgn(model, normalisation)
    written = write_prompted_images(client, image_paths(args.images), args.out)
    print(f"wrote {len(written)} prompted image(s) to {args.out}")
    if args.server:
        for path in written:
            pixels = np.asarray(Image.open(path).convert("RGB"))
            batch = torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0)
            with torch.no_grad():
                logits = model.head(remote_features(args.server, batch))
            print(json.dumps({"image": str(path), "label": int(logits.argmax(-1)[0])}))
    return 0

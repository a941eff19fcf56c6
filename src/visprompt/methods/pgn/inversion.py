"""Prompt inversion: PGN's prompt tokens as RGB patches, for an unmodified ViT.

A ViT's patch embedding is linear per patch: e(x_g) = W·vec(x_g) + b with W ∈ R^{D×3P²}.
When 3·P² ≥ D and W has full row rank, x_g = W⁺(t − b) is a patch whose embedding is
exactly the token t (position embeddings are added afterwards by the model, so the
inversion happens before them). PGN trains its tokens at the positions of its
`PromptLayout`: by default in k extra patch rows under the image, the rest of those rows
blank (0 in normalised space). The client builds that taller image with the inverted
patches pasted in; the server is the unmodified backbone switched to the taller input size
by timm itself (`set_input_size`, whose resampled position embeddings are the ones PGN
trained with), so both paths give the backbone the same sequence.

Constraint: RGB deployment needs 3·P² ≥ D (ViT-B/16: 768 ≥ 768; a patch-4 ViT needs
D ≤ 48). Inversion works in normalised space; images leave the client de-normalised to
[0, 1] RGB. Clipping to [0, 1] and 8-bit quantisation (for PNG/JPEG transport) are lossy;
`inversion_agreement` measures what they cost.

Client/server split: `PromptClient` (generator + library + inversion; it holds only the
patch embedding's W and b, no other backbone weight) turns images into prompted images;
`PromptServer` is the plain frozen backbone (at the prompted input size) with the trained
head.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visprompt.backbones import data_config, pooled_features
from visprompt.data.transforms import denormalize, normalize, to_model_input
from visprompt.progress import progress_bar

if TYPE_CHECKING:  # the model imports this module
    from visprompt.methods.pgn.model import PromptGenerationNetwork, PromptLayout, TokenGenerator


def patch_embedding_linear(vit: nn.Module) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(W (D, 3·P²), b (D,), P) of a ViT whose patch embedding is one linear map per patch."""
    embed = vit.patch_embed
    proj = embed.proj
    linear = (
        isinstance(proj, nn.Conv2d)
        and proj.kernel_size == proj.stride
        and proj.kernel_size[0] == proj.kernel_size[1]
        and proj.padding in ((0, 0), "valid")
        and proj.groups == 1
        and isinstance(embed.norm, nn.Identity)
    )
    if not linear:
        raise ValueError(
            "prompt inversion needs a patch embedding that is one linear map per patch "
            "(Conv2d with kernel = stride, square, no padding, no norm after it); got "
            f"{proj!r} with norm {type(embed.norm).__name__}"
        )
    weight = proj.weight.detach().reshape(proj.out_channels, -1)
    bias = proj.bias.detach() if proj.bias is not None else weight.new_zeros(weight.shape[0])
    return weight, bias, int(proj.kernel_size[0])


class PatchInverter(nn.Module):
    """Tokens (…, D) -> normalised RGB patches (…, 3, P, P) whose embeddings are the tokens."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, patch_size: int) -> None:
        super().__init__()
        dim, inputs = weight.shape
        if inputs != 3 * patch_size**2:
            raise ValueError(f"weight has {inputs} inputs; expected 3·P² = {3 * patch_size**2}")
        rank = int(torch.linalg.matrix_rank(weight.double()))
        if inputs < dim or rank < dim:
            raise ValueError(
                f"prompt inversion needs 3·P² >= D and a full-rank patch embedding: here "
                f"3·{patch_size}² = {inputs}, D = {dim}, rank {rank}. Use a ViT with a larger "
                f"patch or a narrower width (D <= {inputs}) for PGN's RGB deployment."
            )
        self.patch_size = int(patch_size)
        self.register_buffer("pinv", torch.linalg.pinv(weight.double()).to(weight.dtype))
        self.register_buffer("bias", bias.clone())

    @classmethod
    def from_vit(cls, vit: nn.Module) -> PatchInverter:
        return cls(*patch_embedding_linear(vit))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        flat = (tokens - self.bias) @ self.pinv.T
        return flat.unflatten(-1, (3, self.patch_size, self.patch_size))


def paste_patches(
    images: torch.Tensor, patches: torch.Tensor, positions: Sequence[int], grid_width: int
) -> torch.Tensor:
    """A copy of `images` (B, 3, H, W) with patch i of (B, L, 3, P, P) at raster `positions[i]`."""
    out = images.clone()
    p = patches.shape[-1]
    for i, pos in enumerate(int(q) for q in positions):
        row, col = divmod(pos, grid_width)
        out[:, :, row * p : (row + 1) * p, col * p : (col + 1) * p] = patches[:, i]
    return out


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> uint8 (clipped, rounded): what a PNG can carry."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8)


def add_prompt_rows(images: torch.Tensor, layout: PromptLayout, patch_size: int) -> torch.Tensor:
    """Normalised images (B, 3, H, W) with the layout's blank (zero) patch rows under them."""
    rows = layout.extra_rows * patch_size
    if rows == 0:
        return images
    blank = images.new_zeros((images.shape[0], images.shape[1], rows, images.shape[-1]))
    return torch.cat([images, blank], dim=-2)


def deployment_backbone(model: PromptGenerationNetwork) -> nn.Module:
    """The unmodified backbone, set by timm to the prompted input size (a copy if it changes).

    For `below` the input is k·P pixels taller: timm's `set_input_size` resamples the
    position embeddings exactly as PGN's token path does (`vit_tokens.grid_pos_embed`).
    A ViT built with `dynamic_img_size=True` would take the taller input as it is.
    """
    vit, layout = model.backbone, model.layout
    if layout.extra_rows == 0:
        return vit
    patch = int(vit.patch_embed.patch_size[0])
    rows, cols = layout.input_grid
    deployed = copy.deepcopy(vit)
    deployed.set_input_size(img_size=(rows * patch, cols * patch))
    return deployed


class PromptClient(nn.Module):
    """Generator + inversion: [0, 1] RGB images -> prompted [0, 1] RGB images (float).

    Needs only the trained generator/library, the patch embedding's W and b, the prompt
    layout and the backbone's normalisation; the output (k·P pixels taller for `below`) is
    not clipped, so that the caller decides about clipping and quantisation (`to_uint8`).
    """

    def __init__(
        self,
        generator: TokenGenerator,
        inverter: PatchInverter,
        layout: PromptLayout,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.generator, self.inverter, self.layout = generator, inverter, layout
        self.grid_width = int(layout.image_grid[1])
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    def from_pgn(
        cls, model: PromptGenerationNetwork, normalisation: Mapping[str, Any] | None = None
    ) -> PromptClient:
        """The client part of a trained PGN (a copy of its generator, in eval mode).

        `normalisation` (mean, std; e.g. a backbone spec's data_config) must be what the
        model was trained with; default: the backbone's timm data config.
        """
        cfg = normalisation or data_config(model.backbone)
        return cls(
            copy.deepcopy(model.generator).eval(),
            PatchInverter.from_vit(model.backbone),
            model.layout,
            cfg["mean"],
            cfg["std"],
        ).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = normalize(images, self.mean, self.std)
        patches = self.inverter(self.generator(x))
        canvas = add_prompt_rows(x, self.layout, self.inverter.patch_size)
        prompted = paste_patches(canvas, patches, self.layout.positions, self.layout.input_grid[1])
        return denormalize(prompted, self.mean, self.std)

    def normalised(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images -> the normalised prompted images a plain server computes on."""
        rgb = denormalize(images, self.mean, self.std)
        return normalize(self(rgb), self.mean, self.std)


class PromptServer(nn.Module):
    """The unmodified frozen backbone and the trained head, fed [0, 1] or uint8 RGB images
    at the prompted input size (no resizing: the prompt patches must stay on the grid)."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    def from_pgn(
        cls, model: PromptGenerationNetwork, normalisation: Mapping[str, Any] | None = None
    ) -> PromptServer:
        cfg = normalisation or data_config(model.backbone)
        return cls(deployment_backbone(model), model.head, cfg["mean"], cfg["std"]).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return self.head(pooled_features(self.backbone, normalize(x, self.mean, self.std)))


class RGBDeployment(nn.Module):
    """A trained PGN served as prompt inversion, in one module with the PGN's own interface:
    normalised images -> `PromptClient` (RGB prompt patches pasted under the image) ->
    `PromptServer` (the unmodified timm ViT at the taller input size + the head).

    The backbone never sees a token: what it computes is what a plain timm model computes on
    the prompted picture, as when a client sends prompted PNGs to a stock model server.
    """

    def __init__(
        self, model: PromptGenerationNetwork, normalisation: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.client = PromptClient.from_pgn(model, normalisation)
        self.server = PromptServer.from_pgn(model, normalisation)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = denormalize(images, self.client.mean, self.client.std)
        return self.server(self.client(rgb))


@torch.no_grad()
def agreement_over_batches(
    model: PromptGenerationNetwork,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    normalisation: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Top-1 of the token path vs the RGB path (float, and clipped + 8-bit), and agreement.

    `batches` yield ([0, 1] RGB images at the model's input size, labels). Returns
    token_top1, rgb_top1, agreement (fraction of equal top-1 predictions), rgb_uint8_top1,
    agreement_uint8 and top1_drop_uint8 (token_top1 − rgb_uint8_top1), each in [0, 1] (the
    drop in [-1, 1]), and clipped_fraction: the share of prompt-patch pixel values outside
    [0, 1] before clipping (image and blank pixels never leave it).
    """
    model.eval()
    device = next(model.generator.parameters()).device
    client = PromptClient.from_pgn(model, normalisation).to(device)
    server = PromptServer.from_pgn(model, normalisation).to(device)
    token, rgb, rgb8, truth, clipped = [], [], [], [], 0
    for batch, labels in batches:
        batch = batch.to(device)
        prompted = client(batch)
        token.append(model(normalize(batch, client.mean, client.std)).argmax(-1).cpu())
        rgb.append(server(prompted).argmax(-1).cpu())
        rgb8.append(server(to_uint8(prompted)).argmax(-1).cpu())
        truth.append(torch.as_tensor(labels, dtype=torch.long).cpu())
        clipped += int(((prompted < 0) | (prompted > 1)).sum())
    if not truth:
        raise ValueError("prompt inversion agreement: no images")
    t, r, q, labels = torch.cat(token), torch.cat(rgb), torch.cat(rgb8), torch.cat(truth)
    acc = {k: float((v == labels).float().mean()) for k, v in (("t", t), ("r", r), ("q", q))}
    prompt_values = len(labels) * client.layout.num_prompts * 3 * client.inverter.patch_size**2
    return {
        "token_top1": acc["t"],
        "rgb_top1": acc["r"],
        "agreement": float((t == r).float().mean()),
        "rgb_uint8_top1": acc["q"],
        "agreement_uint8": float((t == q).float().mean()),
        "top1_drop_uint8": acc["t"] - acc["q"],
        "clipped_fraction": clipped / prompt_values,
    }


def inversion_agreement(
    model: PromptGenerationNetwork,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 64,
    normalisation: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """`agreement_over_batches` on [0, 1] RGB `images` (N, 3, S, S) at the model's input size."""
    batches = (
        (images[i : i + batch_size], labels[i : i + batch_size])
        for i in range(0, len(images), batch_size)
    )
    return agreement_over_batches(model, batches, normalisation)


def deployment_metrics(
    model: PromptGenerationNetwork,
    dataset: Dataset,
    data_config: Mapping[str, Any],
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, float]:
    """RGB-deployment figures of a trained PGN on a dataset of (uint8 CHW image, label).

    Images are resized to the model's input size as in evaluation; the keys of
    `agreement_over_batches` come back prefixed `rgb_` (`rgb_agreement`, ...; token_top1 is
    left out: it is the run's test top-1), ready to sit next to a run's test metrics. A ViT
    whose patches cannot be inverted (3·P² < D) gives a ValueError naming the constraint.
    """
    PatchInverter.from_vit(model.backbone)  # fail before the pass over the data
    size = int(data_config["input_size"][-1])
    black, unit = (0.0,) * 3, (1.0,) * 3
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    batches = (
        (to_model_input(images, size, black, unit), labels)
        for images, labels in progress_bar(
            loader, desc="pgn rgb", disable=not progress, leave=False
        )
    )
    result = agreement_over_batches(model, batches, data_config)
    return {
        (key if key.startswith("rgb_") else f"rgb_{key}"): value
        for key, value in result.items()
        if key != "token_top1"
    }

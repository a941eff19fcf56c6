"""Masked-autoencoder (MAE) pretraining of a timm ViT encoder, written for this project after
He et al., "Masked Autoencoders Are Scalable Vision Learners" (2022): the encoder sees a
random 25 % of the patches, a small transformer decoder fills in the rest from mask tokens,
and the loss is the mean squared error on the masked patches' per-patch normalised pixels.

Only the encoder is kept (a timm ViT without a classifier head, `num_classes=0`): methods
that need a source head (vp_ilm's label mapping) cannot use it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.data import TensorDataset

from visprompt.training import Preprocess
from visprompt.training.augment import flip_crop
from visprompt.training.schedule import warmup_cosine

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class MaeConfig:
    """The MAE recipe: optimisation (AdamW with betas 0.9/0.95, linear warm-up then cosine,
    the recipe's `train` fields) and masking/decoder (its `mae` fields)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    min_lr: float
    seed: int
    mask_ratio: float = 0.75
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True


class MaskedAutoencoder(nn.Module):
    """A timm ViT `encoder` (patch_embed, cls_token, pos_embed with the class position,
    blocks, norm) with a light decoder predicting every masked patch's pixels."""

    def __init__(self, encoder: nn.Module, config: MaeConfig) -> None:
        super().__init__()
        if getattr(encoder, "num_prefix_tokens", 1) != 1 or encoder.pos_embed is None:
            raise ValueError("MAE needs a ViT with one class token and a learned pos_embed")
        self.encoder = encoder
        self.mask_ratio = config.mask_ratio
        self.norm_pix_loss = config.norm_pix_loss
        self.patch = int(encoder.patch_embed.patch_size[0])
        num_patches = int(encoder.patch_embed.num_patches)
        channels = int(encoder.patch_embed.proj.in_channels)
        dim = config.decoder_dim
        self.decoder_embed = nn.Linear(encoder.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.decoder_blocks = nn.Sequential(
            *[Block(dim, config.decoder_heads, mlp_ratio=4.0) for _ in range(config.decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.decoder_pred = nn.Linear(dim, self.patch * self.patch * channels)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, p*p*C), patches in the patch embedding's row-major order."""
        n, c, h, w = images.shape
        p = self.patch
        x = images.reshape(n, c, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> tuple:
        """Encoder tokens of a random (1 - mask_ratio) of each image's patches, with the
        permutation that restores patch order and the 0/1 mask (1 = hidden)."""
        enc = self.encoder
        x = enc.patch_embed(images) + enc.pos_embed[:, 1:]
        n, length, dim = x.shape
        keep = max(1, int(round(length * (1 - self.mask_ratio))))
        noise = torch.rand(n, length, generator=generator, device=x.device)
        shuffle = noise.argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        kept = torch.gather(x, 1, shuffle[:, :keep, None].expand(-1, -1, dim))
        mask = torch.ones(n, length, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(n, -1, -1)
        tokens = enc.norm(enc.blocks(torch.cat([cls, kept], dim=1)))
        return tokens, restore, mask

    def decode(self, tokens: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Pixel predictions for every patch (N, L, p*p*C) from the visible tokens."""
        x = self.decoder_embed(tokens)
        n, visible, dim = x.shape
        length = restore.shape[1]
        masks = self.mask_token.expand(n, length + 1 - visible, -1)
        patches = torch.cat([x[:, 1:], masks], dim=1)
        patches = torch.gather(patches, 1, restore[:, :, None].expand(-1, -1, dim))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 1:]

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean squared error on the masked patches (targets normalised per patch)."""
        tokens, restore, mask = self.encode(images, generator)
        pred = self.decode(tokens, restore)
        target = self.patchify(images)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = (pred - target).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or name.endswith(("cls_token", "pos_embed", "mask_token", "_pos"))


def reconstruction_loss(
    mae: MaskedAutoencoder, images: torch.Tensor, preprocess: Preprocess, seed: int
) -> float:
    """Mean masked-patch loss over `images` (uint8 NCHW) with masks drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    mae.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(images), 1024):
            batch = preprocess(images[start : start + 1024])
            total += float(mae.loss(batch, generator)) * len(batch)
            count += len(batch)
    return total / count


def pretrain_mae(
    encoder: nn.Module,
    train_set: TensorDataset,
    val_set: TensorDataset,
    preprocess: Preprocess,
    config: MaeConfig,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, float]:
    """Train `encoder` in place as an MAE on `train_set`'s images (labels unused); returns
    the final masked-patch loss on `val_set` (fixed masks, seed 0) and the time taken."""
    torch.manual_seed(config.seed)
    mae = MaskedAutoencoder(encoder, config)
    decay = [p for n, p in mae.named_parameters() if not _no_decay(n, p)]
    rest = [p for n, p in mae.named_parameters() if _no_decay(n, p)]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": rest, "weight_decay": 0},
        ],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    images = train_set.tensors[0]
    steps = math.ceil(len(images) / config.batch_size)
    schedule = warmup_cosine(
        optimizer,
        steps_per_epoch=steps,
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        min_lr=config.min_lr,
    )
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    for epoch in range(config.epochs):
        mae.train()
        order = torch.randperm(len(images), generator=generator)
        running, tic = 0.0, time.perf_counter()
        for step in range(steps):
            batch = preprocess(
                images[order[step * config.batch_size : (step + 1) * config.batch_size]]
            )
            loss = mae.loss(flip_crop(batch, generator), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += float(loss.detach())
        row = {
            "train_loss": running / steps,
            "val_loss": reconstruction_loss(mae, val_set.tensors[0], preprocess, seed=0),
            "epoch_time_s": time.perf_counter() - tic,
        }
        if on_epoch_end:
            on_epoch_end(epoch, row)
    mae.eval()
    return {
        "val_reconstruction_loss": round(row["val_loss"], 4),
        "train_reconstruction_loss": round(row["train_loss"], 4),
        "epochs_run": config.epochs,
        "train_time_s": time.perf_counter() - started,
    }

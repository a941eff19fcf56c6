"""Samples of many versions through one backbone call: each version's `SharedForm` acts on
its own samples only (input prompts, activation δ, prompt tokens, head).

Samples are grouped by what the backbone sees: the prepared input's shape (PGN's RGB prompt
makes a taller picture) and the prompt tokens' shape (VPT's sequence is longer). Each group
is one backbone call; within it, per-sample δs are added by a forward hook (zero for the
samples of other versions) and per-sample tokens are stacked. Every operation is the one the
version computes alone, so the logits equal its own up to float rounding of a larger batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from visprompt.backbones import pooled_features
from visprompt.methods import vit_tokens
from visprompt.methods.base import SharedForm

#: (version's form, its normalised images (n, 3, H, W)) for one shared call.
Item = tuple[SharedForm, torch.Tensor]


def _embed(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch tokens of images of any size on the patch grid (timm's PatchEmbed steps)."""
    embed = vit.patch_embed
    if tuple(images.shape[-2:]) == tuple(embed.img_size):
        return embed(images)  # the module itself, so hooks on it (AP) run
    patches = embed.proj(images)
    if embed.flatten:
        patches = patches.flatten(2).transpose(1, 2)
    return embed.norm(patches)


@contextlib.contextmanager
def _activation_prompts(
    backbone: nn.Module, forms: Sequence[SharedForm], sizes: Sequence[int]
) -> Iterator[None]:
    """Forward hooks adding each sample's own δ to its layer's output (zero for others)."""
    by_layer: dict[str, list[tuple[slice, torch.Tensor]]] = {}
    start = 0
    for form, size in zip(forms, sizes, strict=True):
        if form.activation is not None:
            layer, delta = form.activation
            by_layer.setdefault(layer, []).append((slice(start, start + size), delta))
        start += size

    def hook(entries: list[tuple[slice, torch.Tensor]]) -> Callable[..., torch.Tensor]:
        def add(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
            delta = torch.zeros_like(output)
            for rows, value in entries:
                delta[rows] = value
            return output + delta

        return add

    handles = [
        backbone.get_submodule(layer).register_forward_hook(hook(entries))
        for layer, entries in by_layer.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _token_features(
    vit: nn.Module, images: torch.Tensor, forms: Sequence[SharedForm], sizes: Sequence[int]
) -> torch.Tensor:
    """A ViT's pooled features on any patch grid, with per-sample prompt tokens if any."""
    patch = int(vit.patch_embed.patch_size[0])
    grid = (images.shape[-2] // patch, images.shape[-1] // patch)
    tokens = vit_tokens.prefix_and_pos(vit, _embed(vit, images), grid=grid)
    prefix, count, hook = vit_tokens.num_prefix_tokens(vit), 0, None
    if forms[0].tokens is not None:
        prompts = torch.cat(
            [f.tokens.unsqueeze(0).expand(n, -1, -1, -1) for f, n in zip(forms, sizes, strict=True)]
        )  # (B, sets, p, D)
        count = prompts.shape[2]
        tokens = vit_tokens.insert_tokens(tokens, prompts[:, 0], prefix)
        if prompts.shape[1] > 1:  # deep: block i >= 1 gets set i in place of the outputs

            def hook(i: int, seq: torch.Tensor) -> torch.Tensor:
                return seq if i == 0 else vit_tokens.replace_tokens(seq, prompts[:, i], prefix)

    tokens = vit_tokens.run_blocks(vit, vit_tokens.start_blocks(vit, tokens), hook)
    return vit_tokens.head_from_tokens(vit, tokens, count, forms[0].pool_tokens)


def _group_key(form: SharedForm, images: torch.Tensor) -> tuple:
    tokens = None if form.tokens is None else (tuple(form.tokens.shape), form.pool_tokens)
    return (tuple(images.shape[1:]), tokens)


@torch.no_grad()
def shared_logits(backbone: nn.Module, items: Sequence[Item]) -> list[torch.Tensor]:
    """Each item's logits, computed with one backbone call per group of compatible samples."""
    prepared = [(form, form.inputs(x) if form.inputs else x) for form, x in items]
    groups: dict[tuple, list[int]] = {}
    for i, (form, x) in enumerate(prepared):
        groups.setdefault(_group_key(form, x), []).append(i)
    logits: list[torch.Tensor] = [torch.empty(0)] * len(items)
    for (shape, tokens), members in groups.items():
        forms = [prepared[i][0] for i in members]
        sizes = [len(prepared[i][1]) for i in members]
        images = torch.cat([prepared[i][1] for i in members])
        native = getattr(getattr(backbone, "patch_embed", None), "img_size", shape[1:])
        with _activation_prompts(backbone, forms, sizes):
            if tokens is None and tuple(shape[1:]) == tuple(native):
                features = pooled_features(backbone, images)
            else:
                features = _token_features(backbone, images, forms, sizes)
        for i, part in zip(members, features.split(sizes), strict=True):
            logits[i] = prepared[i][0].head(part)
    return logits

"""The method x backbone test matrix: one `Case` per method configuration.

`test_matrix.py` runs every generic check (parameter count against a formula, training
touches only trainable tensors, frozen backbone in eval, save/load round trip, cached
split) over every (case, backbone) pair. To add a method, append a `Case` to `CASES`
with its options, the backbones it applies to, the ones it must refuse, and its
trainable-parameter formula computed from the architecture of a fresh tiny backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tiny import IMAGE_SIZE, TINY_BACKBONES
from torch import nn

NUM_CLASSES = 5
VITS = ("vit", "vit_reg", "vit_avg")
CNNS = ("resnet", "convnext")
ALL = VITS + CNNS

Formula = Callable[[nn.Module, dict[str, Any]], int]


@dataclass(frozen=True)
class Case:
    """One method configuration of the matrix.

    `expected_trainable(backbone, options)` is the trainable-parameter count on a fresh
    backbone of that kind, head included. `per_backbone` overrides options for a kind
    (e.g. AP's layer name differs between families).
    """

    id: str
    method: str
    expected_trainable: Formula
    options: dict[str, Any] = field(default_factory=dict)
    backbones: tuple[str, ...] = ALL
    refuses: tuple[str, ...] = ()
    per_backbone: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the artifact holds the whole backbone (full fine-tuning) instead of a few tensors
    trains_backbone: bool = False
    #: the method offers a frozen prefix / trainable suffix split (prefix caching)
    cacheable: bool = False

    def options_for(self, kind: str) -> dict[str, Any]:
        return self.options | self.per_backbone.get(kind, {})


# -- architecture facts of the tiny backbones (read from the model, not from the method) ----
def head(bb: nn.Module) -> int:
    """New `Linear(D, C)`."""
    return bb.num_features * NUM_CLASSES + NUM_CLASSES


def vit_dims(bb: nn.Module) -> tuple[int, int, int, int]:
    """(D, blocks, MLP hidden width, tokens incl. prefix)."""
    d, blocks = bb.embed_dim, len(bb.blocks)
    return (
        d,
        blocks,
        bb.blocks[0].mlp.fc1.out_features,
        bb.patch_embed.num_patches + (bb.num_prefix_tokens),
    )


def resnet_widths(bb: nn.Module) -> tuple[int, list[tuple[int, int]]]:
    """(stem width, [(stage width, blocks)]) of a BasicBlock ResNet (every stage downsamples
    its first block in the tiny layout: stem 64 -> 16)."""
    kwargs = TINY_BACKBONES["resnet"][1]
    return 64, [(c, len(getattr(bb, f"layer{i + 1}"))) for i, c in enumerate(kwargs["channels"])]


def convnext_dims(bb: nn.Module) -> tuple[list[int], list[int]]:
    kwargs = TINY_BACKBONES["convnext"][1]
    return list(kwargs["dims"]), list(kwargs["depths"])


def family_of(bb: nn.Module) -> str:
    name = type(bb).__name__
    return {"VisionTransformer": "vit", "ResNet": "resnet", "ConvNeXt": "convnext"}[name]


def total_minus_classifier(bb: nn.Module, _: dict[str, Any]) -> int:
    own = sum(p.numel() for p in bb.parameters())
    return own - sum(p.numel() for p in bb.get_classifier().parameters()) + head(bb)


def norm_affine(bb: nn.Module, _: dict[str, Any]) -> int:
    """gamma + beta of every norm: ViT 2 LN per block + final (or fc_norm); ResNet every BN;
    ConvNeXt stem, downsample, block and head LayerNorm2d."""
    fam = family_of(bb)
    if fam == "vit":
        d, blocks, _, _ = vit_dims(bb)
        return 2 * d * (2 * blocks + 1) + head(bb)
    if fam == "resnet":
        stem, stages = resnet_widths(bb)
        bn_channels = stem + sum(c * (2 * n + 1) for c, n in stages)  # 2 per block + downsample
        return 2 * bn_channels + head(bb)
    dims, depths = convnext_dims(bb)
    block_norms = sum(d * n for d, n in zip(dims, depths, strict=True))
    norm_channels = dims[0] + sum(dims[:-1]) + block_norms + dims[-1]  # stem, downsample, head
    return 2 * norm_channels + head(bb)


def biases(bb: nn.Module, _: dict[str, Any]) -> int:
    """ViT: qkv 3D, proj D, fc1 H, fc2 D, two LN D per block, patch proj D, final norm D.
    ResNet: BN betas only (convs have no bias). ConvNeXt: conv biases + LN betas."""
    fam = family_of(bb)
    if fam == "vit":
        d, blocks, hidden, _ = vit_dims(bb)
        return blocks * (7 * d + hidden) + 2 * d + head(bb)
    if fam == "resnet":
        stem, stages = resnet_widths(bb)
        return stem + sum(c * (2 * n + 1) for c, n in stages) + head(bb)
    dims, depths = convnext_dims(bb)
    stem = 2 * dims[0]  # conv + norm
    downsample = sum(dims[i - 1] + dims[i] for i in range(1, len(dims)))  # norm + conv
    # per block: dw conv, norm, fc1 (4d), fc2
    blocks = sum(7 * d * n for d, n in zip(dims, depths, strict=True))
    return stem + downsample + blocks + dims[-1] + head(bb)


def lora_params(bb: nn.Module, options: dict[str, Any]) -> int:
    """r·(in + out) per adapted linear, r·(in·k² + out) per adapted conv: ViT qkv, proj,
    fc1, fc2 per block; CNNs every ungrouped conv (ConvNeXt's MLP is 1x1 convs)."""
    r = options["rank"]
    if family_of(bb) == "vit":
        d, blocks, hidden, _ = vit_dims(bb)
        per_block = (d + 3 * d) + (d + d) + (d + hidden) + (hidden + d)
        return r * blocks * per_block + head(bb)
    convs = [m for m in bb.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    return sum(
        r * (m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels) for m in convs
    ) + head(bb)


#: AP layers per family and the activation they produce at 32 px.
AP_LAYERS = {
    "vit": "blocks.1",
    "vit_reg": "blocks.1",
    "vit_avg": "blocks.1",
    "resnet": "layer3",
    "convnext": "stages.2",
}


def ap_params(bb: nn.Module, options: dict[str, Any]) -> int:
    """full: N·D tokens (prefix included) or C·H·W (layer3 / stages.2: stride 16);
    channel: D or C."""
    fam = family_of(bb)
    if fam == "vit":
        d, _, _, tokens = vit_dims(bb)
        shape = (tokens, d)
    elif fam == "resnet":
        c = resnet_widths(bb)[1][2][0]
        shape = (c, IMAGE_SIZE // 16, IMAGE_SIZE // 16)
    else:
        shape = (convnext_dims(bb)[0][2], IMAGE_SIZE // 16, IMAGE_SIZE // 16)
    delta = shape[0] * shape[1] * (shape[2] if len(shape) == 3 else 1)
    if options["granularity"] == "channel":
        delta = shape[-1] if fam == "vit" else shape[0]
    return delta + head(bb)


AP_PER_BACKBONE = {k: {"layer": v} for k, v in AP_LAYERS.items()}

CASES: list[Case] = [
    Case("linear_probe", "linear_probe", lambda bb, _: head(bb), cacheable=True),
    Case("full_finetune", "full_finetune", total_minus_classifier, trains_backbone=True),
    Case("norm_tuning", "norm_tuning", norm_affine),
    Case("bias_tuning", "bias_tuning", biases),
    Case("lora", "lora", lora_params, options={"rank": 2, "alpha": 4.0}),
    Case(
        "ap_full",
        "ap",
        ap_params,
        options={"granularity": "full", "image_size": IMAGE_SIZE},
        per_backbone=AP_PER_BACKBONE,
        cacheable=True,
    ),
    Case(
        "ap_channel",
        "ap",
        ap_params,
        options={"granularity": "channel", "image_size": IMAGE_SIZE},
        per_backbone=AP_PER_BACKBONE,
        cacheable=True,
    ),
]


def matrix() -> list[tuple[Case, str]]:
    """Every (case, backbone kind) pair the case applies to."""
    return [(case, kind) for case in CASES for kind in case.backbones]


def refusals() -> list[tuple[Case, str]]:
    """Every (case, backbone kind) pair that must be refused with a clear error."""
    return [(case, kind) for case in CASES for kind in case.refuses]


# -- vp / vpt (input pixels and ViT prompt tokens) ------------------------------------------
VP_SIZE = 4  # pad width / patch side at 32 px


def vp_params(bb: nn.Module, options: dict[str, Any]) -> int:
    """pad: 12·p·(S−p); patch: 3·p²; plus a new head unless a label mapping is used."""
    p, s = options["prompt_size"], options["image_size"]
    prompt = 12 * p * (s - p) if options["design"] == "pad" else 3 * p * p
    return prompt + (head(bb) if options.get("output", "head") == "head" else 0)


def vpt_params(bb: nn.Module, options: dict[str, Any]) -> int:
    """shallow p·D, deep L·p·D, plus head."""
    d, blocks, _, _ = vit_dims(bb)
    sets = blocks if options["variant"] == "deep" else 1
    return sets * options["num_prompts"] * d + head(bb)


VP_OPTIONS = {"prompt_size": VP_SIZE, "image_size": IMAGE_SIZE}
CASES += [
    Case("vp_pad", "vp", vp_params, options={"design": "pad", **VP_OPTIONS}),
    Case(
        "vp_fixed_patch_first_k",
        "vp",
        vp_params,
        options={"design": "fixed_patch", "output": "first_k", **VP_OPTIONS},
    ),
    Case(
        "vp_random_patch_iterative",
        "vp",
        vp_params,
        options={"design": "random_patch", "output": "iterative", **VP_OPTIONS},
    ),
    Case(
        "vpt_shallow",
        "vpt",
        vpt_params,
        options={"variant": "shallow", "num_prompts": 3},
        backbones=VITS,
        refuses=CNNS,
    ),
    Case(
        "vpt_deep",
        "vpt",
        vpt_params,
        options={"variant": "deep", "num_prompts": 3, "dropout": 0.1, "pool_prompts": True},
        backbones=VITS,
        refuses=CNNS,
    ),
]


def adavipro_params(bb: nn.Module, options: dict[str, Any]) -> int:
    """Pad 12·p·(S−p) + region conv c·r²·E + E (c = 1 gray edges) + 1×1 conv 2·E + 2 + head."""
    p, s = options["prompt_size"], options["image_size"]
    r, e = options["region_size"], options["embed_dim"]
    return 12 * p * (s - p) + (r * r * e + e) + (2 * e + 2) + head(bb)


def pgn_params(bb: nn.Module, options: dict[str, Any]) -> int:
    """Generator (stem conv + BN, one basic block per stage, 1×1 shortcut when the shape
    changes) + Linear(last width, L·M) + library M·D + head."""
    w, lib, slots = options["width"], options["library_size"], options["num_prompts"]
    w = [w, 2 * w, 4 * w, 8 * w]
    total, in_ch = 27 * w[0] + 2 * w[0], w[0]
    for i, out in enumerate(w):
        total += 9 * in_ch * out + 9 * out * out + 4 * out
        total += in_ch * out + 2 * out if (i > 0 or in_ch != out) else 0
        in_ch = out
    return total + (w[-1] + 1) * slots * lib + lib * bb.embed_dim + head(bb)


CASES += [
    Case(
        "adavipro",
        "adavipro",
        adavipro_params,
        options={"region_size": 8, "embed_dim": 8, **VP_OPTIONS},
    ),
    Case(
        "pgn",
        "pgn",
        pgn_params,
        options={"num_prompts": 4, "library_size": 8, "width": 2},
        backbones=VITS,
        refuses=CNNS,
    ),
]

"""Optimizer parameter groups: the method's own tensors and the new head learn separately.

Reference settings differ by part: VP trains its pixel prompt with SGD at lr 40, which
would wreck a linear head; VPT and full fine-tuning decay weights but not biases, norm
affines or tokens. So every trainable parameter falls in one of four groups:

- `method` / `method_no_decay`: what the method trains (prompt, perturbation, generator,
  LoRA matrices, backbone weights), at the method's lr (a method's own per-part groups,
  e.g. AdaViPro's generator scale, are kept and split the same way);
- `head` / `head_no_decay`: the new classification head (`model.head`), at `head_lr` and
  `head_weight_decay` (each defaults to the method's value when unset).

The `*_no_decay` groups hold the parameters of the kinds named in
`TrainConfig.no_weight_decay` (weight decay 0): `bias` (parameters named `bias`), `norm`
(affine parameters of normalisation layers) and `prompt` (tensors a module holds itself
rather than through a Linear/Conv/Embedding layer: prompt tokens, pixel prompts,
perturbations, token libraries, CLS and position embeddings).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from visprompt.training.config import TrainConfig

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)


def parameter_kind(module: nn.Module, name: str) -> str:
    """`bias`, `norm`, `prompt` or `weight` for parameter `name` held directly by `module`."""
    if name == "bias":
        return "bias"
    if isinstance(module, _NORMS) or "norm" in type(module).__name__.lower():
        return "norm"
    if isinstance(module, _LAYERS):
        return "weight"
    return "prompt"


def _kinds(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> kind, over every parameter of `model` (shared ones counted once)."""
    kinds: dict[int, str] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            kinds.setdefault(id(param), parameter_kind(module, name))
    return kinds


def optimizer_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's groups (non-empty, each named), method groups first.

    Every trainable parameter lands in exactly one group; the learning-rate schedule
    multiplies each group's own lr, so the ratios hold throughout training. A method's
    head is `model.head` (empty for a plain classifier in `training.plain.WholeModule`).
    """
    head = model.head
    kinds, heads = _kinds(model), {id(p) for p in head.parameters()}
    exempt = set(config.no_weight_decay)
    groups: dict[tuple[int, str], dict[str, Any]] = {}
    seen: set[int] = set()
    for index, group in enumerate(model.param_groups(config.lr, config.weight_decay)):
        for param in group["params"]:
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            is_head = id(param) in heads
            part = "head" if is_head else "method"
            lr, wd = group["lr"], group.get("weight_decay", config.weight_decay)
            if is_head:
                lr = lr if config.head_lr is None else config.head_lr
                wd = wd if config.head_weight_decay is None else config.head_weight_decay
            if kinds.get(id(param), "prompt") in exempt:
                part, wd = f"{part}_no_decay", 0.0
            name = part if index == 0 else f"{part}_{index}"
            entry = groups.setdefault(
                (index, part), {"name": name, "params": [], "lr": lr, "weight_decay": wd}
            )
            entry["params"].append(param)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to fit")
    left_out = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if left_out:
        raise ValueError(
            f"{type(model).__name__}.param_groups leaves trainable parameters out: {left_out[:5]}"
        )
    order = ("method", "method_no_decay", "head", "head_no_decay")
    return [groups[k] for k in sorted(groups, key=lambda k: (order.index(k[1]), k[0]))]

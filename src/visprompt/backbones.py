"""timm backbones: creation, pretrained weights (hub or local file), layer addressing.

Methods never import timm internals directly for these questions; they ask here, so a new
backbone family is supported in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from visprompt.atomic import atomic_path

Family = Literal["vit", "cnn"]


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """Create a timm model by registry name; optionally load pretrained weights.

    `pretrained=True` asks the timm/Hugging Face hub (cached; needs a network the first
    time). `weights` loads a local file instead (safetensors, or a checkpoint read with
    `torch.load(weights_only=True)`).
    """
    model = timm.create_model(name, pretrained=pretrained and weights is None, **model_kwargs)
    model.timm_model_kwargs = dict(model_kwargs)  # for `backbone_reference`
    if weights is not None:
        load_weights(model, weights)
    return model


def backbone_reference(model: nn.Module) -> dict[str, Any]:
    """What identifies a backbone in an artifact: timm name, model kwargs, tensor sha256.

    `model_kwargs` is known for models made by `create_backbone` (None otherwise); the
    sha256 covers every parameter and buffer, so it changes with any weight (None for a
    model on the meta device, which has no values).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    state = model.state_dict()
    meta = any(t.is_meta for t in state.values())
    return {
        "name": cfg.get("architecture", type(model).__name__),
        "model_kwargs": getattr(model, "timm_model_kwargs", None),
        "sha256": None if meta else tensors_sha256(state.items()),
    }


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> nn.Module:
    """Load a state dict from a local file without executing any code it may contain."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    model.load_state_dict(state, strict=strict)
    return model


def save_weights(model: nn.Module, path: str | Path) -> str:
    """Write the model's state dict as safetensors atomically; return its sha256."""
    path = Path(path)
    with atomic_path(path) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp))
    return sha256_file(path)


def from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a backbone from a `backbone_specs` entry, refusing weights whose sha256 differs.

    `spec`: name, model_kwargs, and either weights_path + sha256 (a local file) or
    source == "hub" (timm pretrained weights).
    """
    kwargs = dict(spec.get("model_kwargs") or {})
    path = spec.get("weights_path")
    if path:
        expected = spec.get("sha256")
        actual = sha256_file(path) if Path(path).is_file() else None
        if actual is None:
            raise FileNotFoundError(f"backbone weights file not found: {path} (try `dvc pull`)")
        if expected and actual != expected:
            raise ValueError(
                f"backbone weights {path} have sha256 {actual[:12]}..., expected "
                f"{expected[:12]}...: the file changed since the spec was written; restore it "
                "with `dvc pull`/`dvc checkout` or rerun the backbone pipeline"
            )
        return freeze(create_backbone(spec["name"], weights=path, **kwargs))
    return freeze(create_backbone(spec["name"], pretrained=spec.get("source") == "hub", **kwargs))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def update_digest(digest: hashlib._Hash, tensor: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes into `digest` (content identity, any device)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")


def tensors_sha256(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over named tensors in name order: a checksum of weights for lineage and caches."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda kv: kv[0]):
        digest.update(name.encode())
        update_digest(digest, tensor)
    return digest.hexdigest()


def family(model: nn.Module) -> Family:
    """`vit` for token-sequence transformers with a patch embedding and blocks, else `cnn`."""
    is_vit = all(hasattr(model, a) for a in ("patch_embed", "blocks", "num_prefix_tokens"))
    return "vit" if is_vit else "cnn"


def require_family(model: nn.Module, wanted: Family, method: str) -> None:
    """Refuse a method that does not apply to this backbone family, with a clear message."""
    got = family(model)
    if got != wanted:
        raise ValueError(
            f"method '{method}' needs a {wanted.upper()} backbone (timm VisionTransformer-like, "
            f"with patch_embed, blocks and prefix tokens); got {type(model).__name__} ({got})."
        )


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable module path (`layer4`, `layer3.5`, `blocks.2`, `patch_embed`, ...)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at `name`; a wrong name is an error that lists the valid top names."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        tops = sorted({n.split(".")[0] for n in modules if n})
        stages = [n for n in modules if n.count(".") <= 1 and n]
        raise ValueError(
            f"unknown layer '{name}' in {type(model).__name__}. Valid names are module paths, "
            f"e.g. {', '.join(stages[:40])}{' ...' if len(stages) > 40 else ''} "
            f"(top level: {', '.join(tops)})."
        )
    return modules[name]


def num_features(model: nn.Module) -> int:
    """Width of the pooled pre-logits features that a new head consumes."""
    return int(model.num_features)


def num_source_classes(model: nn.Module) -> int:
    """Number of outputs of the backbone's own (source) classifier; 0 when it has none."""
    return int(getattr(model, "num_classes", 0) or 0)


def data_config(model: nn.Module) -> dict[str, Any]:
    """Preprocessing the backbone expects: input size, mean, std (from timm's pretrained_cfg).

    A ViT built with another `img_size` than its pretrained_cfg (e.g. 32 px) reports the size
    its patch embedding was built for; CNNs accept any size and keep the config's.
    """
    cfg = timm.data.resolve_data_config({}, model=model)
    input_size = tuple(cfg["input_size"])
    built_for = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if built_for:
        input_size = (input_size[0], *built_for)
    return {
        "input_size": input_size,
        "mean": tuple(float(m) for m in cfg["mean"]),
        "std": tuple(float(s) for s in cfg["std"]),
        "interpolation": cfg.get("interpolation", "bilinear"),
    }


def image_size(model: nn.Module) -> int:
    """Square input side the model was built for."""
    return int(data_config(model)["input_size"][-1])


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pre-logits features of `x`: timm's forward_features then forward_head(pre_logits)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def freeze(model: nn.Module) -> nn.Module:
    """Stop gradients to every tensor of `model` and put it in eval mode."""
    model.requires_grad_(False)
    return model.eval()


class BackboneSegment(nn.Module):
    """A contiguous run of a backbone's feature steps, optionally ending in its pooling.

    It holds the backbone's modules without registering them, so `.train()`, `.to()` and
    `.parameters()` on a segment never touch the backbone: the owner of the backbone (an
    adapted model) decides its mode and device, and a segment has no parameters of its own.
    """

    def __init__(self, model: nn.Module, steps: list[Any], pool: bool) -> None:
        super().__init__()
        self._steps = tuple(steps)
        self._pool = model.forward_head if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self._steps:
            x = step(x)
        return x if self._pool is None else self._pool(x, pre_logits=True)


def _feature_steps(model: nn.Module) -> list[tuple[str, Any]]:
    """(module path, callable) pairs whose composition is timm's `forward_features`."""
    from timm.models.convnext import ConvNeXt
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, ResNet):
        steps = [(n, getattr(model, n)) for n in ("conv1", "bn1", "act1", "maxpool")]
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            steps += [(f"{stage}.{i}", b) for i, b in enumerate(getattr(model, stage))]
        return steps
    if isinstance(model, VisionTransformer):
        steps = [("patch_embed", model.patch_embed), ("", model._pos_embed)]
        steps += [("patch_drop", model.patch_drop), ("norm_pre", model.norm_pre)]
        steps += [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
        return steps + [("norm", model.norm)]
    if isinstance(model, ConvNeXt):
        steps = [("stem", model.stem)]
        for i, stage in enumerate(model.stages):
            steps.append((f"stages.{i}.downsample", stage.downsample))
            steps += [(f"stages.{i}.blocks.{j}", b) for j, b in enumerate(stage.blocks)]
        return steps + [("norm_pre", model.norm_pre)]
    raise ValueError(
        f"split_at supports timm ResNet, VisionTransformer and ConvNeXt; got "
        f"{type(model).__name__}. Use a method that does not split the backbone, or add the "
        f"family to visprompt.backbones._feature_steps."
    )


def _covers(layer: str, step: str) -> bool:
    return bool(step) and (step == layer or step.startswith(layer + "."))


def split_points(model: nn.Module) -> list[str]:
    """Layer names `split_at` accepts: every feature step and every stage that groups steps."""
    steps = [name for name, _ in _feature_steps(model) if name]
    groups = {s.rsplit(".", 1)[0] for s in steps if "." in s}
    groups |= {g.rsplit(".", 1)[0] for g in groups if "." in g}
    return [n for n in layer_names(model) if n in groups or n in steps]


def split_at(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    """Cut the pooled-features path after `layer`: `suffix(prefix(x)) == pooled_features(x)`.

    `prefix(x)` is the output of `layer` (`layer3`, `layer3.5`, `blocks.2`, `patch_embed`,
    `stages.2`, `stages.2.blocks.0`); `suffix` runs the rest of `forward_features` and
    `forward_head(pre_logits=True)`, so a new head goes after it. Layers inside a block (a
    norm, an activation) cannot be split: use a forward hook there. Grad checkpointing is
    ignored (the segments run the plain path).
    """
    get_layer(model, layer)
    steps = _feature_steps(model)
    hits = [i for i, (name, _) in enumerate(steps) if _covers(layer, name)]
    if not hits:
        raise ValueError(
            f"cannot split {type(model).__name__} at '{layer}': it is inside a block. "
            f"Split points are: {', '.join(split_points(model))}."
        )
    cut = hits[-1] + 1
    calls = [fn for _, fn in steps]
    return BackboneSegment(model, calls[:cut], pool=False), BackboneSegment(
        model, calls[cut:], pool=True
    )

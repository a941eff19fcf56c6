"""AP (activation prompts): one universal perturbation added to a chosen layer's output."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from visprompt.backbones import get_layer, pooled_features, split_at, split_points, stage_points
from visprompt.backbones import image_size as input_side
from visprompt.methods.ap.config import APConfig
from visprompt.methods.base import AdaptedModel, Classifier, SharedForm, register
from visprompt.methods.norm_tuning.model import NORM_TYPES


def _channels_last(module: nn.Module) -> bool | None:
    """Layout a leaf module produces: True for channels-last, False for NCHW, None unknown.

    Linears and LayerNorm/RMS norms act on the last axis; convs, BatchNorm, GroupNorm and
    timm's `*2d` norms (LayerNorm2d, RmsNorm2d, ...) on axis 1; elementwise modules
    (activations, dropout, identity) say nothing.
    """
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, _ConvNd | _BatchNorm | nn.GroupNorm):
        return False
    cls = type(module).__name__
    if cls.endswith("2d"):
        return False
    if isinstance(module, nn.LayerNorm) or "Norm" in cls:
        return True
    return None


def _probe(backbone: nn.Module, layer: nn.Module, size: int) -> tuple[torch.Size, int]:
    """Output shape of `layer` (without batch) and its channel axis, from one no-grad
    forward of a zero image; the layer must run exactly once per forward.

    The channel axis of a 4-D output is the layer's declared `output_fmt` (timm PatchEmbed)
    if any, else that of the last leaf module inside the layer whose output has the layer's
    shape and a known layout (so a ConvNeXt/Swin NHWC norm is channels-last while a ConvNeXt
    block, which permutes back, is NCHW), else the backbone's `output_fmt`, else NCHW. 3-D
    token sequences (N, D) and 2-D features use the last axis.
    """
    outputs: list[torch.Size] = []
    leaves: list[tuple[nn.Module, torch.Size]] = []
    handles = [
        layer.register_forward_hook(lambda m, i, o: outputs.append(getattr(o, "shape", None)))
    ]
    for m in layer.modules():
        if not list(m.children()):
            handles.append(
                m.register_forward_hook(
                    lambda m, i, o: leaves.append((m, getattr(o, "shape", None)))
                )
            )
    param = next(backbone.parameters())
    try:
        with torch.no_grad():
            pooled_features(backbone, param.new_zeros(1, 3, size, size))
    except (RuntimeError, AssertionError) as err:
        raise ValueError(
            f"AP could not probe the backbone at {size}x{size} px ({err}); pass "
            f"image_size=<the side your images have> to build('ap', ...)."
        ) from err
    finally:
        for h in handles:
            h.remove()
    if len(outputs) != 1:
        raise ValueError(
            f"AP needs a layer that runs exactly once per forward; this one ran {len(outputs)} "
            f"times. Choose a stage or block (e.g. one of the split points)."
        )
    shape = outputs[0]
    if shape is None:
        raise ValueError("AP needs a layer whose output is one tensor; this one returns a tuple.")
    if len(shape) != 4:
        return shape[1:], len(shape) - 1
    declared = getattr(layer, "output_fmt", None)  # timm PatchEmbed, Swin stages
    if declared is not None:
        last = declared == "NHWC"  # timm's Format is a str enum
    else:
        known = [lay for m, s in leaves if s == shape and (lay := _channels_last(m)) is not None]
        last = known[-1] if known else getattr(backbone, "output_fmt", "NCHW") == "NHWC"
    return shape[1:], 3 if last else 1


class ActivationPrompt(nn.Module):
    """`z + delta`: delta is the whole activation (`full`) or one value per channel
    (`channel`, broadcast over every other axis). Zero init: the identity at step 0."""

    def __init__(self, shape: torch.Size, channel_axis: int, granularity: str) -> None:
        super().__init__()
        if granularity == "full":
            self.delta = nn.Parameter(torch.zeros(shape))
            self.broadcast_shape = tuple(shape)
        else:
            axis = channel_axis - 1  # `shape` has no batch axis
            self.delta = nn.Parameter(torch.zeros(shape[axis]))
            self.broadcast_shape = tuple(n if a == axis else 1 for a, n in enumerate(shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.delta.view(self.broadcast_shape)


@register(APConfig)
class ActivationPrompting(AdaptedModel):
    """One universal δ added to the output of backbone layer `layer`, plus a new head.

    Choices where the paper is open: both granularities are offered (default `full`) and a
    new linear head is trained with δ. The backbone stays frozen and in eval mode, so a
    channel δ after a BatchNorm/LayerNorm equals shifting its β. δ is added by a forward
    hook that exists only while `forward` runs, so the backbone object is never altered;
    nothing before the layer requires grad, so autograd records (and stores) nothing there
    and the backward pass stops at the layer. For a layer sweep, `split_points(backbone)`
    lists the stages and blocks (all of them also support cached training).
    """

    method_config: APConfig

    def __init__(self, backbone: nn.Module, num_classes: int, config: APConfig) -> None:
        if not config.layer:
            raise ValueError(
                "ap needs `layer`, the module path to prompt; e.g. one of "
                f"{', '.join(_safe_split_points(backbone)) or 'the backbone module paths'}."
            )
        size = int(config.image_size or input_side(backbone))
        super().__init__(backbone, num_classes, config.model_copy(update={"image_size": size}))
        shape, axis = _probe(self.backbone, get_layer(self.backbone, config.layer), size)
        self.prompt = ActivationPrompt(shape, axis, config.granularity)
        self.head = self.new_head()

    def _add_prompt(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return self.prompt(output)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        layer = self.backbone.get_submodule(self.method_config.layer)
        handle = layer.register_forward_hook(self._add_prompt)
        try:
            features = pooled_features(self.backbone, images)
        finally:
            handle.remove()
        return self.head(features)

    def served(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> nn.Module:
        """A channel δ on a normalisation layer's output folded into that layer's β (a copy):
        the plain backbone's speed, the same function. Other settings serve the model."""
        layer = self.method_config.layer
        bias = getattr(self.backbone.get_submodule(layer), "bias", None)
        foldable = (
            self.method_config.granularity == "channel"
            and isinstance(self.backbone.get_submodule(layer), NORM_TYPES)
            and isinstance(bias, torch.Tensor)
            and bias.shape == self.prompt.delta.shape
        )
        if not foldable:
            return self.eval()
        backbone = copy.deepcopy(self.backbone)
        with torch.no_grad():
            backbone.get_submodule(layer).bias.add_(self.prompt.delta)
        return Classifier(backbone, copy.deepcopy(self.head))

    def shared_form(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> SharedForm:
        """δ added to the layer's output per sample (the function `served` folds into β)."""
        delta = self.prompt.delta.detach().view(self.prompt.broadcast_shape)
        return SharedForm(head=self.head, activation=(self.method_config.layer, delta))

    def split_for_cache(self) -> tuple[nn.Module, nn.Module] | None:
        """Prefix: backbone up to the layer's output (no δ); suffix: δ, the rest, the head.

        None, with a warning that says why, when the layer sits inside a block or the
        backbone's features are no chain of modules: training then runs the whole backbone.
        """
        layer = self.method_config.layer
        try:
            points = split_points(self.backbone)
        except ValueError as why:
            warnings.warn(f"ap: no prefix cache for layer '{layer}': {why}", stacklevel=2)
            return None
        if layer not in points:
            warnings.warn(
                f"ap: no prefix cache for layer '{layer}': it sits inside a block, where the "
                f"backbone cannot be cut; every step runs the whole backbone. Cacheable "
                f"layers: {', '.join(stage_points(self.backbone))} (all: split_points).",
                stacklevel=2,
            )
            return None
        prefix, rest = split_at(self.backbone, layer)
        return prefix, nn.Sequential(self.prompt, rest, self.head)


def _safe_split_points(backbone: nn.Module) -> list[str]:
    try:
        return split_points(backbone)
    except ValueError:
        return []

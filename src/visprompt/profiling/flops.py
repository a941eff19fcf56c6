"""FLOPs (one multiply-add = 2, as torch.utils.flop_counter) and backward-pass structure.

torch 2.14 has no formula for the CPU flash-attention kernels, so they are mapped to its SDPA
formulas here; otherwise attention counts as zero on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


_aten = torch.ops.aten
_CPU_ATTENTION = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that also counts CPU fused attention."""
    return FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)


def forward_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs of one forward pass over `images`, with autograd on: the counter's module tracker
    fails under no_grad when a module receives a trainable parameter (VPT's prompts)."""
    with flop_counter() as counter:
        model(images)
    return counter.get_total_flops()


@dataclass(frozen=True)
class BackwardCost:
    """What a step's backward has to do, whatever the machine: FLOPs of `loss.backward()`,
    bytes autograd saved in the forward for it, and autograd nodes reachable from the loss."""

    backward_flops: int
    saved_bytes: int
    graph_nodes: int


def backward_cost(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> BackwardCost:
    """The backward of a cross-entropy step on (`images`, `labels`): a method trainable from
    layer l should save and compute nothing before l, and these numbers show whether it does."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.setdefault(id(t), t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(images), labels)
    if loss.grad_fn is None:
        return BackwardCost(0, 0, 0)
    nodes = _reachable_nodes(loss.grad_fn)
    with flop_counter() as counter:
        loss.backward()
    for p in model.parameters():
        p.grad = None
    return BackwardCost(counter.get_total_flops(), sum(saved.values()), nodes)


def _reachable_nodes(root: torch.autograd.graph.Node) -> int:
    seen, stack = {root}, [root]
    while stack:
        for child, _ in stack.pop().next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return len(seen)

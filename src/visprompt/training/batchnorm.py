"""SyncBatchNorm for CPU processes (gloo), where torch's SyncBatchNorm refuses CPU tensors.

torch's `nn.SyncBatchNorm` runs only on accelerators (its statistics kernels have no CPU
implementation), so a multi-process CPU run would otherwise normalise each process's share
of the batch on its own and drift from a single process. `CpuSyncBatchNorm` computes the
same global statistics with differentiable all-reduces: the global mean, then the global
mean of squared deviations. The all-reduces' backward sums each rank's gradient
contribution, which with DDP's gradient averaging gives the gradient of the global batch,
exactly as torch's kernels do on GPUs (`_AllSum`, on the public `dist.all_reduce`: torch's
differentiable `torch.distributed.nn.functional.all_reduce` is deprecated in favour of the
private `_functional_collectives`). Eval mode, and any run without an initialised process
group, use torch's own batch norm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm whose training statistics are all-reduced over the process group.

    Not an `nn.SyncBatchNorm` subclass: DDP refuses those in CPU modules.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {x.dim()}D")

    @classmethod
    def convert(cls, module: nn.modules.batchnorm._BatchNorm) -> CpuSyncBatchNorm:
        """A layer with `module`'s settings that shares its parameters and buffers (as
        `nn.SyncBatchNorm.convert_sync_batchnorm` does)."""
        synced = cls(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            bias=module.bias is not None,
        )
        for name in ("weight", "bias"):
            if getattr(module, name) is not None:
                setattr(synced, name, getattr(module, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(synced, name, getattr(module, name))
        return synced.train(module.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *([1] * (x.dim() - 2))]
        local = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        count = _AllSum.apply(local)  # images x positions per channel, over every process
        mean = _AllSum.apply(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = _AllSum.apply(centred.square().sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.item())
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        """As `nn.BatchNorm`: momentum (or the cumulative average) and the unbiased variance."""
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:
            factor = 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / max(count - 1, 1)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased, factor)


class _AllSum(torch.autograd.Function):
    """Sum over all processes; its backward sums the gradients the same way."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllSum.apply(grad)


def sync_trained_batchnorm(model: nn.Module, device: torch.device) -> list[str]:
    """Make every BatchNorm that trains a `torch.nn.SyncBatchNorm`; return their names.

    A BatchNorm trains when it runs in train mode under `model.train()` (a method's own
    generator, a fully fine-tuned backbone); frozen ones stay as they are, in eval mode.
    Statistics then cover the global batch, so k processes normalise as one does. On the
    CPU (gloo) the layers are `CpuSyncBatchNorm`: torch's SyncBatchNorm refuses CPU tensors.
    """
    was_training = model.training
    model.train()
    trained = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    model.train(was_training)
    for name, module in trained:
        parent, _, leaf = name.rpartition(".")
        if device.type == "cpu":
            synced = CpuSyncBatchNorm.convert(module)
        else:
            synced = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        setattr(model.get_submodule(parent) if parent else model, leaf, synced)
    return [name for name, _ in trained]

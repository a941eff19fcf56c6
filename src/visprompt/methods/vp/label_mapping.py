"""Label mappings from a frozen source head's K classes onto C target classes.

Input-space methods (VP, ...) may keep the backbone's own classifier instead of training a
new head: target class j reads source logit `mapping[j]`. Strategies:

- `first_k`: j -> j.
- `frequency` (FLM): a greedy one-to-one assignment on the co-occurrence counts of target
  labels and source predictions on the training split, computed once (at the first
  epoch start, with the prompt as initialised).
- `iterative` (ILM-VP, Chen et al. 2023): the same assignment recomputed at the start of
  every epoch with the current prompt.

The mapping is a buffer, so it is saved with the artifact and restored by `load`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from visprompt.progress import progress_bar

Strategy = Literal["first_k", "frequency", "iterative"]


def check_sizes(num_classes: int, num_source_classes: int) -> None:
    """A one-to-one mapping needs at least as many source classes as target classes."""
    if num_source_classes < 1:
        raise ValueError(
            "a label mapping needs the backbone's source classifier, but this backbone has "
            "none (num_classes=0; a self-supervised MAE encoder such as backbone vit_mae has "
            "no classifier): use output='head', or a backbone with a source head (backbone "
            "vit, the supervised Fashion-MNIST ViT)."
        )
    if num_classes > num_source_classes:
        raise ValueError(
            f"a label mapping maps each of the {num_classes} target classes to its own source "
            f"class, but the backbone's head has only {num_source_classes}: use output='head'."
        )


def co_occurrence(
    source_predictions: torch.Tensor, labels: torch.Tensor, num_source: int, num_classes: int
) -> torch.Tensor:
    """Counts (K, C): how often source class k was predicted for an image of target class j."""
    flat = source_predictions.long() * num_classes + labels.long()
    counts = torch.bincount(flat, minlength=num_source * num_classes)
    return counts.view(num_source, num_classes)


def greedy_one_to_one(counts: torch.Tensor) -> torch.Tensor:
    """Target -> source (C,) by repeatedly taking the largest remaining count (ILM-VP).

    Each step assigns the (source, target) pair with the highest count and removes that
    source row and target column; ties go to the lowest flat index, so it is deterministic.
    """
    num_source, num_classes = counts.shape
    work = counts.to(torch.float64).clone()
    mapping = torch.empty(num_classes, dtype=torch.long)
    for _ in range(num_classes):
        flat = int(torch.argmax(work))
        source, target = divmod(flat, num_classes)
        mapping[target] = source
        work[source, :] = -1.0
        work[:, target] = -1.0
    return mapping


def _summed_over_processes(counts: torch.Tensor) -> torch.Tensor:
    """Under data-parallel training each process sees a shard of the training split: sum
    the counts, so every process computes the same mapping from the whole split."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
    return counts


@torch.no_grad()
def source_predictions(
    source_logits: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax source predictions, labels) over every batch, without gradients."""
    preds, labels = [], []
    for images, target in progress_bar(batches, desc="label mapping", leave=False):
        preds.append(source_logits(images).argmax(dim=1).cpu())
        labels.append(torch.as_tensor(target).cpu())
    if not preds:
        raise ValueError("label mapping: the training loader yielded no batches")
    return torch.cat(preds), torch.cat(labels)


class LabelMapping(nn.Module):
    """Selects C of the source head's K logits; `mapping` is a saved buffer."""

    def __init__(self, strategy: Strategy, num_classes: int, num_source_classes: int) -> None:
        super().__init__()
        check_sizes(num_classes, num_source_classes)
        self.strategy = strategy
        self.num_classes = num_classes
        self.num_source_classes = num_source_classes
        self.register_buffer("mapping", torch.arange(num_classes, dtype=torch.long))
        #: How many times the mapping was recomputed (saved, so a resumed run knows).
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, source_logits: torch.Tensor) -> torch.Tensor:
        return source_logits[:, self.mapping]

    def needs_update(self) -> bool:
        """`iterative`: at every epoch start; `frequency`: once; `first_k`: never."""
        return self.strategy == "iterative" or (
            self.strategy == "frequency" and int(self.updates) == 0
        )

    def update(
        self,
        source_logits: Callable[[torch.Tensor], torch.Tensor],
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """Recompute the mapping from the source predictions on `batches`; return it."""
        preds, labels = source_predictions(source_logits, batches)
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(
                f"label mapping: labels must lie in [0, {self.num_classes}), got "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        counts = co_occurrence(preds, labels, self.num_source_classes, self.num_classes)
        counts = _summed_over_processes(counts.to(self.mapping.device))
        self.mapping.copy_(greedy_one_to_one(counts.cpu()).to(self.mapping.device))
        self.updates += 1
        return self.mapping

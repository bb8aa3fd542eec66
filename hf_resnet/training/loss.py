"""The training loss: cross-entropy for hard and mixed (soft) targets."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def soft_cross_entropy(outputs, labels: torch.Tensor, num_items_in_batch=None, label_smoothing: float = 0.0):
    """Cross-entropy for hard (class index) or soft (mixup/cutmix) targets, summed then divided by the item count.

    Dividing by `num_items_in_batch` (the Trainer's count over all accumulated micro-batches)
    keeps the loss identical with and without gradient accumulation.
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    losses = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="none")
    if num_items_in_batch is None:
        return losses.mean()
    return losses.sum() / torch.as_tensor(num_items_in_batch, device=losses.device)

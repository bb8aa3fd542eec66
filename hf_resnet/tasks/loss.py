"""The training loss: cross-entropy for hard and mixed (soft) targets."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def soft_cross_entropy(
    outputs, labels: torch.Tensor, num_items_in_batch=None, label_smoothing: float = 0.0, weight=None
):
    """Cross-entropy for hard (class index) or soft (mixup/cutmix) targets, summed then divided by the item count.

    Dividing by `num_items_in_batch` (the Trainer's count over all accumulated micro-batches)
    keeps the loss identical with and without gradient accumulation. `weight`: per-class loss weights.
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    weight = None if weight is None else weight.to(logits.device)
    losses = F.cross_entropy(logits.float(), labels, weight, label_smoothing=label_smoothing, reduction="none")
    if num_items_in_batch is None:
        return losses.mean()
    return losses.sum() / torch.as_tensor(num_items_in_batch, device=losses.device)


def multi_label_bce(outputs, labels: torch.Tensor, num_items_in_batch=None, label_smoothing: float = 0.0, weight=None):
    """Binary cross-entropy with logits on multi-hot (or mixed) targets, one independent yes/no per class.

    Smoothing pulls each target towards 1/2 (0 -> eps/2, 1 -> 1 - eps/2), the two-outcome form
    of cross-entropy's smoothing. Each image's loss is the mean over its classes, so the scale
    does not grow with the number of classes; images are summed then divided by the item count
    as in `soft_cross_entropy`. `weight`: per-class weights of the positive term (BCE's `pos_weight`).
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    targets = labels.float() * (1.0 - label_smoothing) + label_smoothing / 2.0
    weight = None if weight is None else weight.to(logits.device)
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none", pos_weight=weight)
    losses = losses.mean(dim=-1)
    if num_items_in_batch is None:
        return losses.mean()
    return losses.sum() / torch.as_tensor(num_items_in_batch, device=losses.device)

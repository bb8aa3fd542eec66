"""Imbalanced classes: loss weights, a class-balanced sampler, and a warning when balance is far off.

A classifier trained on 1,000 photos of one class and 50 of another learns that guessing the
big class is nearly always right. Two standard remedies, either enough on its own:

- `--class_weights balanced` weighs each class's loss by n / (C * n_c) (scikit-learn's
  "balanced"), so every class contributes the same total loss per epoch;
- `--sampler balanced` draws training images with probability 1 / n_c, so batches show every
  class about equally often (minority images repeat, with fresh augmentation each time).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: Largest/smallest class ratio above which a run warns: beyond it, plain training under-serves the small class.
IMBALANCE_RATIO = 10.0


def class_counts(labels, num_labels: int) -> np.ndarray:
    """Images per class: class indices count once each, multi-hot rows count once per label they hold."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return (labels > 0.5).sum(axis=0).astype(np.int64)
    return np.bincount(labels.astype(np.int64), minlength=num_labels)


def balanced_class_weights(counts: np.ndarray) -> torch.Tensor:
    """n / (C * n_c) per class; a class with no training image gets weight 0 (it never appears).

    >>> balanced_class_weights(np.array([30, 10])).tolist()
    [0.6666666865348816, 2.0]
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def positive_weights(counts: np.ndarray, total: int) -> torch.Tensor:
    """Multi-label counterpart: each class's (images without it) / (images with it), BCE's `pos_weight`.

    A class on no image or on every one keeps weight 1: the ratio would be undefined or would erase its
    positive term, the only one it has.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ratio = (total - counts) / np.maximum(counts, 1)
    return torch.tensor(np.where((counts > 0) & (counts < total), ratio, 1.0), dtype=torch.float32)


def warn_if_imbalanced(counts: np.ndarray, names: list[str]) -> str | None:
    """Log (and return) a warning when the largest class has more than IMBALANCE_RATIO times the smallest's images."""
    present = [(int(n), name) for n, name in zip(counts, names) if n > 0]
    if len(present) < 2:
        return None
    (most, big), (least, small) = max(present), min(present)
    if most <= IMBALANCE_RATIO * least:
        return None
    message = (
        f"Imbalanced classes: {big!r} has {most} training images, {small!r} only {least} ({most / least:.0f}x). "
        "Consider --class_weights balanced or --sampler balanced, and judge the model by balanced_accuracy "
        "and per-class recall rather than accuracy."
    )
    logger.warning(message)
    return message


class BalancedSampler(torch.utils.data.Sampler[int]):
    """Draws `len(labels)` indices per epoch, with replacement, each class equally likely.

    Every process builds the same sampler and draws the same sequence, from a generator seeded by
    (seed, epoch); accelerate then gives each process its own share of the batches, as it does for
    the Trainer's default random sampler. Resuming mid-epoch replays the same sequence, so the
    Trainer's skipping of the batches already seen lands exactly where the run stopped.
    A multi-label image weighs by its rarest label (an image without labels, by the rarest class).
    """

    def __init__(self, labels, num_labels: int, seed: int):
        labels = np.asarray(labels)
        counts = class_counts(labels, num_labels).astype(np.float64)
        inverse = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        if labels.ndim == 2:
            held = np.where(labels > 0.5, inverse[None, :], 0.0).max(axis=1)
            weights = np.where(held > 0, held, inverse.max())
        else:
            weights = inverse[labels.astype(np.int64)]
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()


def balance(labels, names: list[str], loss_weights, args):
    """(loss weights or None, sampler or None) for a run's `--class_weights`/`--sampler`, warning first when
    classes are far apart. `loss_weights(counts, total)`: the task's balanced weights (`Task.loss_weights`)."""
    counts = class_counts(labels, len(names))
    warn_if_imbalanced(counts, names)
    weights = loss_weights(counts, len(labels)) if args.class_weights == "balanced" else None
    return weights, BalancedSampler(labels, len(names), args.seed) if args.sampler == "balanced" else None

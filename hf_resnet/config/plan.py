"""A run's plan: what it will do, decided once and read by everything that shows, sets up or records it."""

from __future__ import annotations

import math

from ..families import BACKBONE_PARTS, HEAD

#: Backbone learning rate for a loaded checkpoint: pretrained features need nudging, not rewriting.
PRETRAINED_BACKBONE_LR = 1e-5


def part_learning_rates(head_lr: float, backbone_lr: float, lr_decay: float = 1.0) -> dict[str, float]:
    """Learning rate of each part: stage4 gets `backbone_lr`, each part closer to the input `lr_decay` times less.

    >>> part_learning_rates(1e-3, 1e-4, 0.5)["stage3"]
    5e-05
    """
    rates = {HEAD: head_lr}
    for depth, part in enumerate(reversed(BACKBONE_PARTS)):
        rates[part] = backbone_lr * lr_decay**depth
    return rates


def scaled_learning_rates(head_lr: float, backbone_lr: float, args) -> tuple[float, float, str]:
    """Apply `--lr_scaling` for the effective batch; also return the sentence printed at start."""
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    ratio = effective / args.lr_reference_batch
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[args.lr_scaling]  # checked in checks.py
    rule = (
        f"LR scaling: {args.lr_scaling} (effective batch {effective}, reference {args.lr_reference_batch}: "
        f"x{factor:.4g})"
        if args.lr_scaling != "none"
        else f"LR scaling: none (rates used as given at effective batch {effective}; "
        f"--lr_scaling linear would multiply them by {ratio:.4g})"
    )
    return head_lr * factor, backbone_lr * factor, rule
